"""Benchmarks: what one scrape costs, and how concurrency hides slow chargers.

Run: .venv/bin/python bench/scrape.py [--quick]

1. pipeline: parse + build families + render for N chargers from the OpenAPI sample payloads (pure CPU, no
   network), per scrape and per charger, plus peak memory of one scrape (tracemalloc);
2. latency: a full /metrics scrape over loopback against N simulated chargers whose every endpoint answers after
   a fixed delay, compared with the delay itself (concurrent: ≈ 1×; one after another would be 4·N×).
Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, generate_latest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exporter.app import create_app
from exporter.config import ChargerConfig, Config
from exporter.metrics import StaticCollector, device_families
from exporter.model import ENDPOINTS, ChargerResult
from exporter.simulator import SIMULATOR, create_simulator_app
from tests.support.readings import result_from_bodies

PAYLOADS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "payloads" / "openapi"


def pipeline(n: int, rounds: int) -> None:
    bodies = {ep: (PAYLOADS / f"{ep}.json").read_bytes() for ep in ENDPOINTS}
    chargers = [ChargerConfig(f"c{i:05d}", f"http://192.0.2.1/{i}", labels=(("site", f"s{i % 7}"),)) for i in range(n)]

    def one() -> tuple[float, float, int]:
        t0 = time.perf_counter()
        results: list[ChargerResult] = [result_from_bodies(c, bodies) for c in chargers]
        t1 = time.perf_counter()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StaticCollector(device_families(results)))
        text = generate_latest(registry)
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1, len(text)

    one()
    runs = [one() for _ in range(rounds)]
    parse = statistics.median(r[0] for r in runs)
    render = statistics.median(r[1] for r in runs)
    tracemalloc.start()
    one()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    total = parse + render
    print(
        f"pipeline  N={n:5d}: parse {parse * 1e3:8.1f} ms  build+render {render * 1e3:8.1f} ms  "
        f"total {total * 1e3:8.1f} ms  = {total / n * 1e6:6.0f} µs/charger  "
        f"exposition {runs[0][2] / 1024:7.0f} KiB  peak mem {peak / 2**20:6.1f} MiB"
    )


async def latency(n: int, delay: float, rounds: int) -> None:
    bodies = {ep: (PAYLOADS / f"{ep}.json").read_bytes() for ep in ENDPOINTS}

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(delay)
        return web.Response(body=bodies[request.match_info["ep"]], content_type="application/json")

    device = web.Application()
    device.router.add_get("/{name}/api/v1/{ep}", slow)
    server = TestServer(device)
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    config = Config(chargers=tuple(ChargerConfig(f"c{i:05d}", f"{base}/c{i:05d}", timeout=30) for i in range(n)))
    client = TestClient(TestServer(create_app(config)))
    await client.start_server()
    try:
        await (await client.get("/metrics")).read()  # warm-up: connections
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            response = await client.get("/metrics")
            await response.read()
            times.append(time.perf_counter() - t0)
        median = statistics.median(times)
        serial = 4 * n * delay
        print(
            f"latency   N={n:5d}, every endpoint {delay * 1e3:.0f} ms: scrape median {median * 1e3:7.1f} ms "
            f"= {median / delay:5.2f}× one request (one after another: {serial:7.1f} s, {serial / median:6.0f}× slower)"
        )
    finally:
        await client.close()
        await server.close()


async def probe_throughput(chargers: int, requests: int, concurrency: int) -> None:
    """/probe requests per second one exporter process serves (simulated chargers on the same loop)."""
    sim_app = create_simulator_app(chargers)
    names = list(sim_app[SIMULATOR].chargers)
    sim = TestServer(sim_app)
    await sim.start_server()
    base = str(sim.make_url("")).rstrip("/")
    config = Config(chargers=tuple(ChargerConfig(n, f"{base}/{n}") for n in names))
    client = TestClient(TestServer(create_app(config)))
    await client.start_server()
    try:
        queue = [names[i % len(names)] for i in range(requests)]

        async def worker() -> None:
            while queue:
                name = queue.pop()
                response = await client.get("/probe", params={"target": name})
                await response.read()

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
        print(
            f"probe     {requests} requests, {concurrency} at a time, {len(names)} chargers: "
            f"{requests / elapsed:6.0f} probes/s ({elapsed / requests * 1e3:.2f} ms each; simulator on the same core)"
        )
    finally:
        await client.close()
        await sim.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller N and fewer rounds")
    args = parser.parse_args()
    sizes = (1, 100, 1000) if args.quick else (1, 100, 1000, 5000)
    for n in sizes:
        pipeline(n, rounds=3 if args.quick else 5)
    for n in (10, 100) if args.quick else (10, 100, 500):
        asyncio.run(latency(n, delay=0.1, rounds=3 if args.quick else 5))
    asyncio.run(probe_throughput(chargers=50, requests=500 if args.quick else 2000, concurrency=20))


if __name__ == "__main__":
    main()
