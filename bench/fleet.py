"""Fleet benchmark: the exporter scraped as Prometheus scrapes it, side by side with the bare-HTTP floor.

Run (about 5 minutes on the 2-core development machine; needs the `bench` extra for the plot):

    .venv/bin/python bench/fleet.py                     # N = 1, 10, 100, 1000; latency 0 and 200 ms
    .venv/bin/python bench/fleet.py --quick             # N = 1, 10; a few seconds (the test suite's smoke test)
    .venv/bin/python bench/fleet.py --sizes 1000 --latencies 0 --rounds 9 --soak 200

Three processes besides this one, all on loopback:

* the **fleet**: N simulated chargers (exporter.simulator), each on its own port, every reply after a
  configurable latency;
* the **exporter** (``python -m exporter --config ...``), scraped on ``/metrics`` with Prometheus 2.42's headers
  (it asks for OpenMetrics and gzip and sends its scrape timeout), and on ``/probe`` for every charger once, 50 at
  a time;
* the **baselines** in a process of their own, driven over HTTP so that their CPU is measured the same way: the
  *floor* sends the same GETs concurrently with one aiohttp session and decodes the JSON (nothing else); the
  *naive* approach polls the chargers one after another.

``BENCH_PROFILE=/tmp/exporter.prof`` runs the exporter under cProfile (one size at a time: the file is
overwritten) for ``python -m pstats``.

Per scrape: wall time, the process's CPU time (user + sys of all its threads, from /proc/PID/task/*/schedstat, in
nanoseconds) and its RSS. Exporter, floor and naive are interleaved round by round against the same fleet, so a
machine shared with other work slows all of them alike; the report gives medians after a warm-up, the ratios to
the floor, the load average around the run, and writes ``fleet.json``, ``fleet.md`` and ``fleet.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
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
PROBE_CONCURRENCY: Final = 50
ENDPOINTS: Final = ("configuration", "transaction", "charging", "limits")
NAIVE_MAX_SECONDS: Final = 6.0  # the naive baseline is skipped where one round would take longer


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


async def serve_fleet(n: int, latency: float) -> None:
    """N simulated chargers, each on its own loopback port: one simulator app behind N sites."""
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
        urls.append((name, f"http://127.0.0.1:{port}/{name}"))
    print(json.dumps(urls), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    await runner.cleanup()


# --- the baselines process ---


async def serve_baselines(urls_file: str) -> None:
    """The floor and the naive approach, each run on request so that the parent measures this process's CPU."""
    with open(urls_file) as file:  # noqa: ASYNC230 - once, before serving
        urls = [url for _, url in json.load(file)]
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

    async def naive(_: web.Request) -> web.Response:
        for base in urls:
            for ep in ENDPOINTS:
                await get(f"{base}/api/v1/{ep}")
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/floor", floor)
    app.router.add_get("/naive", naive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(json.dumps(site._server.sockets[0].getsockname()[1]), flush=True)  # type: ignore[union-attr]
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await session.close()
    await runner.cleanup()


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
    """Start ``python bench/fleet.py ARGS`` and return it with the first line it prints."""
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
    urls: Sequence[tuple[str, str]], workdir: Path, extra_args: Sequence[str], src: Path
) -> Iterator[tuple[Proc, str]]:
    config = workdir / "exporter.yml"
    lines = ["timeout: 10", "chargers:"]
    for name, url in urls:
        lines += [f"  - name: {name}", f"    url: {url}"]
    config.write_text("\n".join(lines) + "\n")
    with contextlib.closing(__import__("socket").socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = (workdir / "exporter.log").open("w")
    profile = ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]] if os.environ.get("BENCH_PROFILE") else []
    popen = subprocess.Popen(
        [sys.executable, *profile, "-m", "exporter", "--config", str(config), "--listen", f"127.0.0.1:{port}",
         "--log-level", "warning", *extra_args],
        stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, text=True, cwd=src,
    )  # fmt: skip
    proc = Proc(popen)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                import urllib.request

                with urllib.request.urlopen(f"{base}/-/ready", timeout=1) as response:  # noqa: S310 - loopback
                    if response.status == 200:
                        break
            if popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"exporter did not start:\n{(workdir / 'exporter.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield proc, base
    finally:
        popen.terminate()
        popen.wait(10)
        log.close()


@dataclass
class Sample:
    wall: float
    cpu: float
    rss: int = 0
    size: int = 0
    up: int = 0


async def timed(pid: int, coro: Any) -> Sample:
    cpu0 = cpu_seconds(pid)
    t0 = time.perf_counter()
    extra: dict[str, int] = await coro
    wall = time.perf_counter() - t0
    return Sample(wall, cpu_seconds(pid) - cpu0, rss_bytes(pid), **extra)


@dataclass
class Row:
    route: str
    n: int
    latency_ms: int
    exporter_wall: float
    exporter_cpu: float  # per scrape (/metrics) or per charger (/probe)
    floor_wall: float
    floor_cpu: float
    naive_wall: float | None
    naive_cpu: float | None
    rss_mib: float
    body_kib: float  # as sent (gzip)
    up: int
    rounds: int

    @property
    def cpu_ratio(self) -> float:
        return self.exporter_cpu / self.floor_cpu if self.floor_cpu else float("nan")

    @property
    def wall_ratio(self) -> float:
        return self.exporter_wall / self.floor_wall if self.floor_wall else float("nan")


@dataclass
class Report:
    machine: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    soak: dict[str, Any] | None = None


async def measure(
    n: int, latency: float, rounds: int, warmup: int, workdir: Path, exporter: tuple[Sequence[str], Path], soak: int
) -> tuple[list[Row], dict[str, Any] | None]:
    fleet, line = spawn("serve-fleet", str(n), str(latency))
    try:
        urls = [tuple(u) for u in json.loads(line)]
        urls_file = workdir / "urls.json"
        urls_file.write_text(json.dumps(urls))
        baselines, port_line = spawn("serve-baselines", str(urls_file))
        try:
            with exporter_process(urls, workdir, *exporter) as (proc, base):
                return await _rounds(
                    n, latency, rounds, warmup, proc, base, baselines, int(port_line), [u[0] for u in urls], soak
                )
        finally:
            baselines.stop()
    finally:
        fleet.stop()


async def _rounds(
    n: int,
    latency: float,
    rounds: int,
    warmup: int,
    exporter: Proc,
    base: str,
    baselines: Proc,
    baselines_port: int,
    names: list[str],
    soak: int,
) -> tuple[list[Row], dict[str, Any] | None]:
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as client:

        async def scrape() -> dict[str, int]:
            async with client.get(f"{base}/metrics", headers=PROMETHEUS_HEADERS, auto_decompress=False) as response:
                raw = await response.read()
                assert response.status == 200, response.status
            import gzip

            text = gzip.decompress(raw).decode() if response.headers.get("Content-Encoding") == "gzip" else raw.decode()
            up = sum(1 for ln in text.splitlines() if ln.startswith("pulsatrix_up{") and ln.endswith(" 1.0"))
            return {"size": len(raw), "up": up}

        async def probe_all() -> dict[str, int]:
            semaphore = asyncio.Semaphore(PROBE_CONCURRENCY)
            ups = 0
            size = 0

            async def one(name: str) -> None:
                nonlocal ups, size
                async with (
                    semaphore,
                    client.get(
                        f"{base}/probe", params={"target": name}, headers=PROMETHEUS_HEADERS, auto_decompress=False
                    ) as response,
                ):
                    body = await response.read()
                    size += len(body)
                    ups += response.status == 200

            await asyncio.gather(*(one(name) for name in names))
            return {"size": size // max(len(names), 1), "up": ups}

        async def baseline(path: str) -> dict[str, int]:
            async with client.get(f"http://127.0.0.1:{baselines_port}{path}") as response:
                await response.read()
                assert response.status == 200
            return {}

        naive_ok = 4 * n * (latency + 0.0007) <= NAIVE_MAX_SECONDS
        kinds: dict[str, list[Sample]] = {k: [] for k in ("metrics", "floor", "naive", "probe", "floor50")}
        for i in range(warmup + rounds):
            got = {
                "metrics": await timed(exporter.pid, scrape()),
                "floor": await timed(baselines.pid, baseline("/floor")),
                "probe": await timed(exporter.pid, probe_all()),
                "floor50": await timed(baselines.pid, baseline(f"/floor?concurrency={PROBE_CONCURRENCY}")),
            }
            if naive_ok:
                got["naive"] = await timed(baselines.pid, baseline("/naive"))
            if i >= warmup:
                for kind, sample in got.items():
                    kinds[kind].append(sample)
        soak_result = None
        if soak:
            rss = []
            for _ in range(soak):
                await scrape()
                rss.append(rss_bytes(exporter.pid))
            settled = rss[min(9, len(rss) - 1)]
            later = rss[min(49, len(rss) - 1)]
            soak_result = {
                "n": n,
                "scrapes": soak,
                "rss_after_10_mib": settled / 2**20,
                "rss_after_50_mib": later / 2**20,
                "growth_after_50_mib": (rss[-1] - later) / 2**20,
                "rss_last_mib": rss[-1] / 2**20,
                "rss_max_mib": max(rss) / 2**20,
                "growth_mib": (rss[-1] - settled) / 2**20,
                "every_10th_mib": [round(r / 2**20, 1) for r in rss[9::10]],
            }

    def med(kind: str, attr: str, per: int = 1) -> float:
        return float(statistics.median(getattr(s, attr) for s in kinds[kind])) / per

    lat_ms = round(latency * 1000)
    rows = [
        Row(
            "/metrics", n, lat_ms, med("metrics", "wall"), med("metrics", "cpu"), med("floor", "wall"),
            med("floor", "cpu"), med("naive", "wall") if naive_ok else None, med("naive", "cpu") if naive_ok else None,
            med("metrics", "rss") / 2**20, med("metrics", "size") / 1024, int(min(s.up for s in kinds["metrics"])),
            rounds,
        ),
        Row(
            "/probe", n, lat_ms, med("probe", "wall"), med("probe", "cpu", n), med("floor50", "wall"),
            med("floor50", "cpu", n), None, None, med("probe", "rss") / 2**20, med("probe", "size") / 1024,
            int(min(s.up for s in kinds["probe"])), rounds,
        ),
    ]  # fmt: skip
    return rows, soak_result


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
    }


def markdown(report: Report) -> str:
    m = report.machine
    out = [
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, Linux {m['kernel']}; load average "
        f"{m['load_before']:.1f} before, {m.get('load_after', 0):.1f} after (other work shares the cores: exporter, "
        "floor and naive are interleaved round by round). Medians of "
        f"{report.rows[0].rounds if report.rows else 0} rounds after warm-up.",
        "",
        "| route | N | latency | exporter wall | floor wall | naive wall | wall ÷ floor | exporter CPU | floor CPU "
        "| naive CPU | CPU ÷ floor | RSS | body (gzip) | up |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def ms(x: float | None) -> str:
        return "—" if x is None else f"{x * 1e3:.1f} ms"

    for r in report.rows:
        per = " /charger" if r.route == "/probe" else ""
        out.append(
            f"| `{r.route}` | {r.n} | {r.latency_ms} ms | {ms(r.exporter_wall)} | {ms(r.floor_wall)} | "
            f"{ms(r.naive_wall)} | {r.wall_ratio:.2f} × | {ms(r.exporter_cpu)}{per} | {ms(r.floor_cpu)}{per} | "
            f"{ms(r.naive_cpu)} | {r.cpu_ratio:.2f} × | {r.rss_mib:.0f} MiB | {r.body_kib:.0f} KiB | {r.up}/{r.n} |"
        )
    out.append("")
    out.append(
        "`/metrics`: one scrape of all N chargers; floor: the same 4·N GETs at once, JSON decoded; naive: one GET "
        "after another (— where a round would take over 6 s). `/probe`: every charger once, "
        f"{PROBE_CONCURRENCY} at a time; wall for all N, CPU per charger; its floor fetches the chargers "
        f"{PROBE_CONCURRENCY} at a time. CPU: user + sys of the process, all threads."
    )
    if report.soak:
        s = report.soak
        out.append(
            f"\nRSS over {s['scrapes']} `/metrics` scrapes of {s['n']} chargers: {s['rss_after_10_mib']:.1f} MiB after "
            f"10, {s['rss_after_50_mib']:.1f} MiB after 50, {s['rss_last_mib']:.1f} MiB after the last (max "
            f"{s['rss_max_mib']:.1f}; growth {s['growth_mib']:+.1f} MiB after scrape 10, "
            f"{s['growth_after_50_mib']:+.1f} MiB after scrape 50). Every 10th scrape: "
            + ", ".join(f"{x:.0f}" for x in s["every_10th_mib"])
            + " MiB."
        )
    return "\n".join(out) + "\n"


def plot(report: Report, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install -e '.[bench]'): no plot", file=sys.stderr)
        return False
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, attr, title in ((axes[0], "wall", "scrape wall (s)"), (axes[1], "cpu", "CPU per scrape (s)")):
        for latency in sorted({r.latency_ms for r in report.rows}):
            rows = sorted(
                (r for r in report.rows if r.route == "/metrics" and r.latency_ms == latency), key=lambda r: r.n
            )
            ns = [r.n for r in rows]
            style = "-" if latency == 0 else "--"
            for who, color in (("exporter", "C0"), ("floor", "C2"), ("naive", "C3")):
                ys = [getattr(r, f"{who}_{attr}") for r in rows]
                pts = [(x, y) for x, y in zip(ns, ys, strict=True) if y is not None and y > 0]
                if pts:
                    ax.plot(*zip(*pts, strict=True), style, marker="o", color=color, label=f"{who}, {latency} ms")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("chargers (N)")
        ax.set_title(f"/metrics: {title}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(
        f"pulsatrix-exporter vs floor and naive — {report.machine['cpu']} ({report.machine['cores']} cores)", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def run(args: argparse.Namespace) -> Report:
    report = Report(machine_info())
    with tempfile.TemporaryDirectory(prefix="pulsatrix-bench-") as tmp:
        for latency in args.latencies:
            for n in args.sizes:
                soak = args.soak if n == max(args.sizes) and latency == 0 else 0
                rows, soak_result = asyncio.run(
                    measure(
                        n,
                        latency / 1000,
                        args.rounds,
                        args.warmup,
                        Path(tmp),
                        (args.exporter_arg, args.exporter_src),
                        soak,
                    )
                )
                for row in rows:
                    print(
                        f"{row.route:9} N={row.n:5d} {row.latency_ms:3d} ms: wall {row.exporter_wall * 1e3:8.1f} ms"
                        f" (floor {row.floor_wall * 1e3:7.1f}, {row.wall_ratio:4.2f}×)  CPU"
                        f" {row.exporter_cpu * 1e3:8.2f} ms (floor {row.floor_cpu * 1e3:7.2f}, {row.cpu_ratio:4.2f}×)"
                        f"  up {row.up}/{row.n}",
                        flush=True,
                    )
                report.rows.extend(rows)
                report.soak = soak_result or report.soak
    report.machine["load_after"] = os.getloadavg()[0]
    return report


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "serve-fleet":
        asyncio.run(serve_fleet(int(argv[1]), float(argv[2])))
        return 0
    if argv and argv[0] == "serve-baselines":
        asyncio.run(serve_baselines(argv[1]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="N = 1, 10 and 2 rounds: a smoke test")
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 10, 100, 1000])
    parser.add_argument("--latencies", type=lambda s: [int(x) for x in s.split(",")], default=[0, 200], help="ms")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--soak", type=int, default=0, help="then this many /metrics scrapes for the RSS trend")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--exporter-arg", action="append", default=[], help="passed to the exporter")
    parser.add_argument(
        "--exporter-src", type=Path, default=ROOT, help="run the exporter package found here (e.g. an older version)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.latencies, args.rounds, args.warmup = [1, 10], [0, 20], 2, 1
    report = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    data = {"machine": report.machine, "rows": [asdict(r) | {"cpu_ratio": r.cpu_ratio, "wall_ratio": r.wall_ratio}
                                                for r in report.rows], "soak": report.soak}  # fmt: skip
    (args.out / "fleet.json").write_text(json.dumps(data, indent=1) + "\n")
    (args.out / "fleet.md").write_text(markdown(report))
    plot(report, args.out / "fleet.png")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
