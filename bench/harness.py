"""What the benchmarks share (bench/fleet.py, bench/shards.py): the simulated fleet and the baseline clients as
processes of their own, the exporter as a process, and reading another process's CPU time and RSS from /proc.

    python bench/harness.py serve-fleet N LATENCY_S          # prints the chargers' (name, url) pairs as JSON
    python bench/harness.py serve-baselines URLS_FILE KIND   # floor, lean or naive; prints its port

Both run until their standard input is closed (by the parent).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import random
import resource
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp
from aiohttp import web

ROOT: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMETHEUS_HEADERS: Final = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
    "User-Agent": "Prometheus/2.42.0",
    "X-Prometheus-Scrape-Timeout-Seconds": "10",
}
ENDPOINTS: Final = ("configuration", "transaction", "charging", "limits")
LEAN_IN_FLIGHT: Final = 64  # the lean client's GETs (one per charger) in flight at once


# --- measuring another process ---


def cpu_seconds(pid: int) -> float:
    """On-CPU time (user + sys) of every thread of a process, in seconds, with nanosecond resolution."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


# --- the fleet process ---


async def serve_fleet(n: int, latency: float, part: int = 0) -> None:
    """N simulated chargers, each on its own loopback port: one simulator app behind N sites. Part P > 0 of a fleet
    served by several processes names its chargers NAME-pP (the simulator's names repeat in every process)."""
    from exporter.simulator import SIMULATOR, create_simulator_app

    @web.middleware
    async def delay(request: web.Request, handler: Any) -> web.StreamResponse:
        if latency > 0:
            await asyncio.sleep(latency)
        response: web.StreamResponse = await handler(request)
        return response

    app = create_simulator_app(n, speed=1.0, seed=11)
    app.middlewares.append(delay)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    names = list(app[SIMULATOR].chargers)
    urls = []
    for name in names:
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        urls.append((f"{name}-p{part}" if part else name, f"http://127.0.0.1:{port}/{name}"))
    print(json.dumps(urls), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    await runner.cleanup()


# --- the baselines processes ---


async def serve_baselines(urls_file: str, kind: str, src: str = "") -> None:
    """One baseline client (``floor``, ``lean`` or ``naive``), run on request (``GET /run``) so that the parent
    measures this process's CPU and RSS, and nothing else's: each baseline runs in a process of its own.

    * floor: every charger's four GETs at once (``?concurrency=M``: M chargers at a time), one session, JSON decoded;
    * lean: the same GETs, LEAN_IN_FLIGHT in flight (that many workers, each charger's four GETs one after another
      on one kept-alive connection), decoded;
    * naive: one GET after another;
    * client: the exporter's own client code (``exporter.scrape.fetch``: its session, ``ChargerClient._get``) and
      its garbage-collector settings, every GET at once, decoded: what the exporter's GETs cost without anything
      else it does per charger (parse, metrics, exposition, tasks, deadlines), as bench/client_paths.py's
      ``fetch+gc``; of the checkout at ``src`` (default: this one).
    """
    with open(urls_file) as file:  # noqa: ASYNC230 - once, before serving
        urls = [url for _, url in json.load(file)]
    # No bound on the pool: each charger's connection is kept between rounds (a bound below N would close one
    # charger's connection to open the next one's: a connect per GET).
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=True)

    async def get(url: str) -> Any:
        async with session.get(url) as response:
            return json.loads(await response.read())

    async def charger(base: str) -> None:
        await asyncio.gather(*(get(f"{base}/api/v1/{ep}") for ep in ENDPOINTS))

    async def floor(request: web.Request) -> web.Response:
        limit = int(request.query.get("concurrency", "0"))
        if limit <= 0:
            await asyncio.gather(*(charger(u) for u in urls))
        else:
            semaphore = asyncio.Semaphore(limit)

            async def bounded(base: str) -> None:
                async with semaphore:
                    await charger(base)

            await asyncio.gather(*(bounded(u) for u in urls))
        return web.Response(text="ok")

    async def lean(_: web.Request) -> web.Response:
        pending = iter(urls)

        async def worker() -> None:
            for base in pending:  # the workers share one iterator: each charger is polled once
                for ep in ENDPOINTS:  # one after another: one kept-alive connection per charger
                    await get(f"{base}/api/v1/{ep}")

        await asyncio.gather(*(worker() for _ in range(LEAN_IN_FLIGHT)))
        return web.Response(text="ok")

    async def naive(_: web.Request) -> web.Response:
        for base in urls:
            for ep in ENDPOINTS:
                await get(f"{base}/api/v1/{ep}")
        return web.Response(text="ok")

    clients = exporter_clients(urls, Path(src) if src else ROOT) if kind == "client" else []

    async def client(_: web.Request) -> web.Response:
        async def one(own: Any, endpoint: str) -> Any:
            body = await own._get(endpoint)
            assert isinstance(body, bytes), body
            return json.loads(body)

        await asyncio.gather(*(asyncio.gather(*(one(c, ep) for ep in ENDPOINTS)) for c in clients))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/run", {"floor": floor, "lean": lean, "naive": naive, "client": client}[kind])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(json.dumps(site._server.sockets[0].getsockname()[1]), flush=True)  # type: ignore[union-attr]
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await session.close()
    if clients:
        await clients[0]._session.close()
    await runner.cleanup()


def exporter_clients(urls: Sequence[str], src: Path) -> list[Any]:
    """One of the exporter's ``ChargerClient`` per charger on its shared session, and its collector settings: those
    of the exporter checked out at ``src``."""
    import gc

    sys.path.insert(0, str(src))  # that checkout's exporter, not whichever one the environment has installed
    from exporter.config import ChargerConfig
    from exporter.scrape.fetch import ChargerClient, make_session
    from exporter.serve.app import GC_THRESHOLDS

    session = make_session(len(urls), None, keepalive_timeout=300.0, max_concurrency=None)
    clients = [ChargerClient(ChargerConfig(f"c{i}", url), session) for i, url in enumerate(urls)]
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    return clients


# --- orchestration ---


@dataclass
class Proc:
    popen: subprocess.Popen[str]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            if self.popen.stdin:
                self.popen.stdin.close()
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            self.popen.terminate()
            self.popen.wait(5)


def spawn(*args: str) -> tuple[Proc, str]:
    """Start ``python bench/harness.py ARGS`` and return it with the first line it prints."""
    popen = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert popen.stdout is not None
    line = popen.stdout.readline()
    if not line:
        raise RuntimeError(f"{args[0]} did not start (exit {popen.wait()})")
    return Proc(popen), line


@contextlib.contextmanager
def exporter_process(
    urls: Sequence[tuple[str, str]],
    workdir: Path,
    extra_args: Sequence[str],
    src: Path,
    name: str = "exporter",
    settings: Sequence[str] = (),
    memwatch: Sequence[str] = (),
) -> Iterator[tuple[Proc, str]]:
    """An exporter serving these chargers (``python -m exporter`` from ``src``), ready; stopped at the end.
    ``settings``: more top-level config lines (``max_concurrency: 256``); ``memwatch``: run it under
    ``bench/memwatch.py`` with these arguments (its output file, ``--tracemalloc``)."""
    config = workdir / f"{name}.yml"
    lines = ["timeout: 10", *settings, "chargers:"]
    for charger, url in urls:
        lines += [f"  - name: {charger}", f"    url: {url}"]
    config.write_text("\n".join(lines) + "\n")
    port = free_port_below_ephemeral()
    log = (workdir / f"{name}.log").open("w")
    profile = ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]] if os.environ.get("BENCH_PROFILE") else []
    program = [str(Path(__file__).with_name("memwatch.py")), *memwatch, "--"] if memwatch else ["-m", "exporter"]
    popen = subprocess.Popen(
        [sys.executable, *profile, *program, "--config", str(config), "--listen", f"127.0.0.1:{port}",
         "--log-level", "warning", *extra_args],
        stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, text=True, cwd=src,
    )  # fmt: skip
    proc = Proc(popen)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # 10,000 chargers on a loaded machine
        while True:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{base}/-/ready", timeout=1) as response,  # noqa: S310 - loopback
            ):
                if response.status == 200:
                    break
            if popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"exporter did not start:\n{(workdir / f'{name}.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield proc, base
    finally:
        popen.terminate()
        popen.wait(10)
        log.close()


def free_port_below_ephemeral() -> int:
    """A free port under the kernel's ephemeral range (32768 up): a fleet of 10,000 chargers binds that many
    ephemeral ports and opens 40,000 connections, so a port found free there may be taken before the exporter binds
    it (it happened)."""
    for port in random.sample(range(20_000, 32_000), 200):
        with contextlib.closing(socket.socket()) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000")


@dataclass
class Sample:
    wall: float
    cpu: float
    rss: int = 0
    size: int = 0
    up: int = 0
    fleet_cpu: float = 0.0  # what the simulated chargers' process spent meanwhile (set by bench/fleet.py)


async def timed(pid: int, coro: Any) -> Sample:
    cpu0 = cpu_seconds(pid)
    t0 = time.perf_counter()
    extra: dict[str, int] = await coro
    wall = time.perf_counter() - t0
    return Sample(wall, cpu_seconds(pid) - cpu0, rss_bytes(pid), **extra)


def write_results(out: Path, name: str, result: Any, text: str) -> None:
    """A benchmark's result: ``NAME.json`` and the Markdown ``NAME.md`` in ``out``, and the Markdown printed."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{name}.md").write_text(text)
    print(text)


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_before": os.getloadavg()[0],
        "load_before_5min": os.getloadavg()[1],
    }


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's file-descriptor limit (inherited by the processes it starts) to ``wanted``, as far as
    the hard limit allows, or past it when running as root; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))  # past the hard limit: root only
        return wanted
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    return min(wanted, hard)


def main(argv: Sequence[str]) -> int:
    if argv[0] == "serve-fleet":
        # The simulated chargers always run on the standard loop: every exporter and baseline faces the same fleet.
        asyncio.run(serve_fleet(int(argv[1]), float(argv[2]), int(argv[3]) if len(argv) > 3 else 0))
    elif argv[0] == "serve-baselines":
        # The baselines run on the loop the exporter beside them is told to use ($PULSATRIX_EVENT_LOOP): the honest
        # comparison, since the loop alone moves the CPU a GET costs.
        from exporter.eventloop import ENV, choose

        loop = choose(os.environ.get(ENV) or "auto")
        with asyncio.Runner(loop_factory=loop.new_loop) as runner:
            runner.run(serve_baselines(*argv[1:4]))
    else:
        raise SystemExit(f"unknown command {argv[0]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
