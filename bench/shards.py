"""Scaling past one process (issue 20): N chargers served by K `/sd`-sharded exporter processes.

    .venv/bin/python bench/shards.py                                  # N = 5,000 and 10,000; K = 1, 2, 4
    .venv/bin/python bench/shards.py --sizes 2000 --shards 1,2 --rounds 1

One fleet of N simulated chargers (bench/harness.py, every charger on its own port, 0 ms replies) and K exporters
with the same config, as in ``deploy/prometheus/prometheus-sharded.yml``: the bench reads the targets from replica
0's ``/sd`` and scrapes each charger as ``/probe?target=NAME`` on replica ``md5(NAME)[8:] mod K`` (Prometheus'
``hashmod``), 50 at a time per replica, all replicas at once, with Prometheus' headers. A round scrapes every
charger once; per round it records the wall time, each replica's CPU (user + sys, all threads), RSS and open file
descriptors, and the fleet's CPU (the fleet runs as processes of 2,500 chargers each, for their fds). With K = 1
it also scrapes ``/metrics`` (all N in one scrape). Medians of the
rounds after a warm-up; writes ``shards.json`` and ``shards.md``. Needs ~9 file descriptors per charger in all
(fleet: a listening socket and 4 connections per charger; exporters: 4 per charger): the bench raises its own
limit as far as it may (past the hard limit as root, where the kernel lets it), and skips a replica count whose
replicas would need more than that (4 per charger + 64).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # bench/ is not a package: found through the path set just above
    PROMETHEUS_HEADERS,
    ROOT,
    cpu_seconds,
    exporter_process,
    machine_info,
    raise_fd_limit,
    rss_bytes,
    spawn,
)

PROBE_CONCURRENCY: Final = 50  # per replica
FDS_PER_CHARGER: Final = 10  # what the fleet, the exporters and this process hold per charger, with room
# Chargers per fleet process: a listening socket and 4 connections each, 12,500 fds, inside the development
# machine's hard limit of 20,000 (which root cannot raise there: no CAP_SYS_RESOURCE in the container).
FLEET_PER_PROCESS: Final = 2500


def shard_of(name: str, replicas: int) -> int:
    """Prometheus' hashmod: the last 8 bytes of the name's md5 as a big-endian integer, modulo the replicas."""
    return int.from_bytes(hashlib.md5(name.encode()).digest()[8:], "big") % replicas  # noqa: S324 - not security


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def one_size(n: int, shard_counts: list[int], args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    started = time.monotonic()
    parts = -(-n // FLEET_PER_PROCESS)
    fleets = []
    rows = []
    try:
        urls: list[tuple[str, str]] = []
        for part in range(parts):
            size = min(FLEET_PER_PROCESS, n - part * FLEET_PER_PROCESS)
            fleet, line = spawn("serve-fleet", str(size), "0", str(part))
            fleets.append(fleet)
            urls += [(str(name), str(url)) for name, url in json.loads(line)]
        print(f"N={n}: fleet up in {time.monotonic() - started:.1f} s ({parts} processes)", flush=True)
        for k in shard_counts:
            if 4 * n / k + 64 > fd_limit():
                print(f"N={n}, {k} replica(s): skipped, a replica would need {4 * n // k + 64} fds", flush=True)
                continue
            # Every replica holds the whole config, so by default it keeps 4 fds for each of the N chargers and caps
            # its port at what is left (16 for 5,000 under 20,000 fds); it only polls its share, so the bench sets
            # the cap as a sharded deployment would (docs/scaling.md, "File descriptors and connections").
            port_cap = ["--web.max-connections", str(max(256, 2 * PROBE_CONCURRENCY))]
            with contextlib.ExitStack() as stack:
                replicas = [
                    stack.enter_context(exporter_process(urls, workdir, port_cap, ROOT, name=f"exporter-{i}"))
                    for i in range(k)
                ]
                rows.append(await _rounds(n, k, replicas, [f.pid for f in fleets], args))
                print(json.dumps(rows[-1]), flush=True)
    finally:
        for fleet in fleets:
            fleet.stop()
    return rows


def fd_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def _rounds(
    n: int, k: int, replicas: list[Any], fleet_pids: list[int], args: argparse.Namespace
) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as client:
        async with client.get(f"{replicas[0][1]}/sd") as response:
            names = [group["targets"][0] for group in await response.json()]
        assert len(names) == n, len(names)
        by_shard: list[list[str]] = [[] for _ in range(k)]
        for name in names:
            by_shard[shard_of(name, k)].append(name)

        async def probe_shard(base: str, shard: list[str]) -> int:
            semaphore = asyncio.Semaphore(PROBE_CONCURRENCY)

            async def one(name: str) -> int:
                async with (
                    semaphore,
                    client.get(f"{base}/probe", params={"target": name}, headers=PROMETHEUS_HEADERS) as response,
                ):
                    text = await response.text()
                    return int(response.status == 200 and "\npulsatrix_up{" in text and "} 1.0\n" in text)

            return sum(await asyncio.gather(*(one(name) for name in shard)))

        pids = [proc.pid for proc, _ in replicas]
        samples = []
        for i in range(args.warmup + args.rounds):
            cpu0 = [cpu_seconds(pid) for pid in pids]
            fleet0 = sum(cpu_seconds(pid) for pid in fleet_pids)
            t0 = time.perf_counter()
            rounds = (probe_shard(base, shard) for (_, base), shard in zip(replicas, by_shard, strict=True))
            ups = await asyncio.gather(*rounds)
            wall = time.perf_counter() - t0
            cpu = [cpu_seconds(pid) - c for pid, c in zip(pids, cpu0, strict=True)]
            sample: dict[str, Any] = {
                "wall": wall,
                "cpu": cpu,
                "fleet_cpu": sum(cpu_seconds(pid) for pid in fleet_pids) - fleet0,
                "up": sum(ups),
                "load": os.getloadavg()[0],
            }
            if k == 1 and args.metrics:
                c0, m0 = cpu_seconds(pids[0]), time.perf_counter()
                async with client.get(f"{replicas[0][1]}/metrics", headers=PROMETHEUS_HEADERS) as response:
                    await response.read()
                    assert response.status == 200, response.status
                sample["metrics_wall"] = time.perf_counter() - m0
                sample["metrics_cpu"] = cpu_seconds(pids[0]) - c0
            if i >= args.warmup:
                samples.append(sample)
        rss = [rss_bytes(pid) / 2**20 for pid in pids]
        fds = [open_fds(pid) for pid in pids]

    def med(key: str) -> float:
        return float(statistics.median(s[key] for s in samples))

    row: dict[str, Any] = {
        "n": n,
        "replicas": k,
        "rounds": len(samples),
        "probe_wall_s": med("wall"),
        "probe_cpu_total_s": float(statistics.median(sum(s["cpu"]) for s in samples)),
        "probe_cpu_max_replica_s": float(statistics.median(max(s["cpu"]) for s in samples)),
        "probe_cpu_ms_per_charger": float(statistics.median(sum(s["cpu"]) for s in samples)) / n * 1e3,
        "fleet_cpu_s": med("fleet_cpu"),
        "up": int(min(s["up"] for s in samples)),
        "rss_mib": [round(r, 1) for r in rss],
        "fds": fds,
        "fds_per_charger": sum(fds) / n,
        "chargers_per_replica": [len(s) for s in by_shard],
        "load": [round(s["load"], 1) for s in samples],
    }
    if k == 1 and args.metrics:
        row["metrics_wall_s"] = med("metrics_wall")
        row["metrics_cpu_s"] = med("metrics_cpu")
    return row


def markdown(machine: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    out = [
        f"Machine: {machine['cpu']}, {machine['cores']} cores, Python {machine['python']}, Linux {machine['kernel']}; "
        f"load average {machine['load_before']:.1f} before, {machine.get('load_after', 0):.1f} after (the fleet "
        "process and every replica share the same 2 cores). Medians of "
        f"{rows[0]['rounds'] if rows else 0} rounds after a warm-up; a round probes every charger once.",
        "",
        "| N | replicas | chargers per replica | probe round wall | exporter CPU per round (all replicas) "
        "| busiest replica's CPU | CPU per charger | fleet CPU | `/metrics` wall | `/metrics` CPU | RSS per replica "
        "| fds per charger | up | load |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in rows:
        metrics_wall = f"{r['metrics_wall_s']:.1f} s" if "metrics_wall_s" in r else "—"
        metrics_cpu = f"{r['metrics_cpu_s']:.1f} s" if "metrics_cpu_s" in r else "—"
        out.append(
            f"| {r['n']:,} | {r['replicas']} | {', '.join(f'{c:,}' for c in r['chargers_per_replica'])} "
            f"| {r['probe_wall_s']:.1f} s | {r['probe_cpu_total_s']:.1f} s | {r['probe_cpu_max_replica_s']:.1f} s "
            f"| {r['probe_cpu_ms_per_charger']:.2f} ms | {r['fleet_cpu_s']:.1f} s | {metrics_wall} | {metrics_cpu} "
            f"| {', '.join(f'{m:.0f}' for m in r['rss_mib'])} MiB | {r['fds_per_charger']:.2f} "
            f"| {r['up']:,}/{r['n']:,} | {', '.join(map(str, r['load']))} |"
        )
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[5000, 10000])
    parser.add_argument("--shards", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--no-metrics", dest="metrics", action="store_false", help="skip /metrics with 1 replica")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    limit = raise_fd_limit(FDS_PER_CHARGER * max(args.sizes) + 1024)
    print(f"file descriptor limit {limit}", flush=True)
    machine = machine_info()
    rows = []
    with tempfile.TemporaryDirectory(prefix="pulsatrix-shards-") as tmp:
        for n in args.sizes:
            rows.extend(asyncio.run(one_size(n, args.shards, args, Path(tmp))))
    machine["load_after"] = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "shards.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=1) + "\n")
    (args.out / "shards.md").write_text(markdown(machine, rows))
    print(markdown(machine, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
