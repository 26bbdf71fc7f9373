"""Fleet benchmark: the exporter scraped as Prometheus scrapes it, side by side with three baseline clients.

Run (minutes for the default sizes; needs the `bench` extra for the plot):

    .venv/bin/python bench/fleet.py                     # N = 1, 10, 100, 1000; latency 0 and 200 ms
    .venv/bin/python bench/fleet.py --quick             # N = 1, 10; a few seconds (the test suite's smoke test)
    .venv/bin/python bench/fleet.py --sizes 1000 --latencies 0 --rounds 9
    .venv/bin/python bench/fleet.py --sizes 200 --latencies 0 --rounds 1 --soak 5000 --soak-minutes 40

Processes besides this one, all on loopback (bench/harness.py):

* the **fleet**: N simulated chargers (exporter.simulator), each on its own port, every reply after a
  configurable latency;
* the **exporter** (``python -m exporter --config ...``), scraped on ``/metrics`` with Prometheus 2.42's headers
  (it asks for OpenMetrics and gzip and sends its scrape timeout), and on ``/probe`` for every charger once, 50 at
  a time;
* three **baselines**, each in a process of its own and driven over HTTP, so that their CPU and RSS are measured
  the same way: the *floor* sends the same 4·N GETs at once with one aiohttp session and decodes the JSON (nothing
  else); the *lean* client sends them with at most 64 in flight (a charger's four one after another on one
  kept-alive connection); the *naive* one polls the
  chargers one after another.

``BENCH_PROFILE=/tmp/exporter.prof`` runs the exporter under cProfile (one size at a time: the file is
overwritten) for ``python -m pstats``.

Per scrape: wall time, the process's CPU time (user + sys of all its threads, from /proc/PID/task/*/schedstat, in
nanoseconds) and its RSS. Exporter and baselines are interleaved round by round against the same fleet, so a
machine shared with other work slows all of them alike; the report gives medians after a warm-up, the ratios of
the exporter's CPU to each baseline's (taken in the same run), the load average around the run, and writes
``fleet.json``, ``fleet.md`` and ``fleet.png``. ``--soak S`` then scrapes ``/metrics`` S times back to back,
samples the exporter's RSS every 100 scrapes and reports the slope over the second half.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import importlib.util
import itertools
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # bench/ is not a package: found through the path set just above
    PROMETHEUS_HEADERS,
    ROOT,
    Proc,
    Sample,
    cpu_seconds,
    exporter_process,
    machine_info,
    rss_bytes,
    spawn,
    timed,
)

PROBE_CONCURRENCY: Final = 50
EVENT_LOOP_ENV: Final = "PULSATRIX_EVENT_LOOP"  # exporter.eventloop.ENV, read by the exporter and harness.py
NAIVE_MAX_SECONDS: Final = 6.0  # the naive baseline is skipped where one round would take longer
BASELINES: Final = ("floor", "lean", "naive")
SOAK_SAMPLE_EVERY: Final = 100


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
    lean_wall: float | None = None
    lean_cpu: float | None = None
    floor_rss_mib: float = 0.0
    lean_rss_mib: float | None = None
    naive_rss_mib: float | None = None
    fleet_cpu: float | None = None  # the simulated chargers' CPU during the exporter's round (/metrics)
    fleet_cpu_lean: float | None = None  # ... during the lean client's round
    loop: str = "asyncio"  # the event loop of the exporter and of the floor, lean and naive baselines

    @property
    def cpu_ratio(self) -> float:
        return self.exporter_cpu / self.floor_cpu if self.floor_cpu else float("nan")

    @property
    def wall_ratio(self) -> float:
        return self.exporter_wall / self.floor_wall if self.floor_wall else float("nan")

    @property
    def lean_ratio(self) -> float | None:
        return self.exporter_cpu / self.lean_cpu if self.lean_cpu else None

    @property
    def naive_ratio(self) -> float | None:
        return self.exporter_cpu / self.naive_cpu if self.naive_cpu else None


@dataclass
class Report:
    machine: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    soak: dict[str, Any] | None = None


Measured = tuple[list["Row"], dict[str, Any] | None]  # the rows of one N and latency, and the soak's result


@dataclass
class Target:
    """A process the rounds drive over HTTP: the exporter or a baseline."""

    proc: Proc
    base: str
    memwatch: Path | None = None  # the exporter's memory probe's output (bench/memwatch.py), in a soak


async def measure(n: int, latency: float, args: argparse.Namespace, workdir: Path) -> Measured:
    fleet, line = spawn("serve-fleet", str(n), str(latency))
    started: list[Proc] = [fleet]
    try:
        urls = [tuple(u) for u in json.loads(line)]
        urls_file = workdir / "urls.json"
        urls_file.write_text(json.dumps(urls))
        baselines = {}
        for kind in BASELINES:
            proc, port_line = spawn("serve-baselines", str(urls_file), kind)
            started.append(proc)
            baselines[kind] = Target(proc, f"http://127.0.0.1:{int(port_line)}")
        settings = args.setting or BENCH_SETTINGS
        memwatch = [str(workdir / "memwatch.jsonl"), *(["--tracemalloc"] if args.soak_tracemalloc else [])]
        watched = memwatch if args.soak else []
        with exporter_process(
            urls, workdir, args.exporter_arg, args.exporter_src, settings=settings, memwatch=watched
        ) as (proc, base):
            exporter = Target(proc, base, Path(memwatch[0]) if args.soak else None)
            names = [str(u[0]) for u in urls]
            return await _rounds(n, latency, args, exporter, baselines, names, fleet.pid)
    finally:
        for proc in reversed(started):
            proc.stop()


async def _rounds(
    n: int,
    latency: float,
    args: argparse.Namespace,
    exporter: Target,
    baselines: dict[str, Target],
    names: list[str],
    fleet_pid: int,
) -> Measured:
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as client:

        async def scrape() -> dict[str, int]:
            async with client.get(
                f"{exporter.base}/metrics", headers=PROMETHEUS_HEADERS, auto_decompress=False
            ) as response:
                raw = await response.read()
                assert response.status == 200, response.status
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
                        f"{exporter.base}/probe",
                        params={"target": name},
                        headers=PROMETHEUS_HEADERS,
                        auto_decompress=False,
                    ) as response,
                ):
                    body = await response.read()
                    size += len(body)
                    ups += response.status == 200

            await asyncio.gather(*(one(name) for name in names))
            return {"size": size // max(len(names), 1), "up": ups}

        async def baseline(kind: str, query: str = "") -> dict[str, int]:
            async with client.get(f"{baselines[kind].base}/run{query}") as response:
                await response.read()
                assert response.status == 200
            return {}

        async def with_fleet(sample: Any) -> Sample:
            """The round, and the fleet's CPU during it: what serving those GETs cost the simulated chargers."""
            before = cpu_seconds(fleet_pid)
            done: Sample = await sample
            done.fleet_cpu = cpu_seconds(fleet_pid) - before
            return done

        naive_ok = 4 * n * (latency + 0.0007) <= NAIVE_MAX_SECONDS
        kinds: dict[str, list[Sample]] = {k: [] for k in ("metrics", "floor", "lean", "naive", "probe", "floor50")}
        for i in range(args.warmup + args.rounds):
            got = {
                "metrics": await with_fleet(timed(exporter.proc.pid, scrape())),
                "floor": await timed(baselines["floor"].proc.pid, baseline("floor")),
                "lean": await with_fleet(timed(baselines["lean"].proc.pid, baseline("lean"))),
                "probe": await timed(exporter.proc.pid, probe_all()),
                "floor50": await timed(
                    baselines["floor"].proc.pid, baseline("floor", f"?concurrency={PROBE_CONCURRENCY}")
                ),
            }
            if naive_ok:
                got["naive"] = await timed(baselines["naive"].proc.pid, baseline("naive"))
            if i >= args.warmup:
                for kind, sample in got.items():
                    kinds[kind].append(sample)
        soak_result = await soak(n, args, exporter, scrape) if args.soak else None

    def med(kind: str, attr: str, per: int = 1) -> float:
        return float(statistics.median(getattr(s, attr) for s in kinds[kind])) / per

    def med_or_none(kind: str, attr: str, per: int = 1) -> float | None:
        return med(kind, attr, per) if kinds[kind] else None

    mib = 2**20
    lat_ms = round(latency * 1000)
    naive_rss = med_or_none("naive", "rss")
    rows = [
        Row(
            "/metrics", n, lat_ms, med("metrics", "wall"), med("metrics", "cpu"), med("floor", "wall"),
            med("floor", "cpu"), med_or_none("naive", "wall"), med_or_none("naive", "cpu"),
            med("metrics", "rss") / mib, med("metrics", "size") / 1024, int(min(s.up for s in kinds["metrics"])),
            args.rounds, med("lean", "wall"), med("lean", "cpu"), med("floor", "rss") / mib, med("lean", "rss") / mib,
            None if naive_rss is None else naive_rss / mib, med("metrics", "fleet_cpu"), med("lean", "fleet_cpu"),
        ),
        Row(
            "/probe", n, lat_ms, med("probe", "wall"), med("probe", "cpu", n), med("floor50", "wall"),
            med("floor50", "cpu", n), None, None, med("probe", "rss") / mib, med("probe", "size") / 1024,
            int(min(s.up for s in kinds["probe"])), args.rounds, floor_rss_mib=med("floor50", "rss") / mib,
        ),
    ]  # fmt: skip
    return rows, soak_result


async def memory_sample(pid: int, file: Path) -> dict[str, Any]:
    """Ask the exporter's memory probe (bench/memwatch.py) for a sample: SIGUSR2, then its new line in ``file``."""

    def lines() -> list[str]:
        return file.read_text().splitlines() if file.exists() else []

    before = len(lines())
    os.kill(pid, signal.SIGUSR2)
    for _ in range(600):  # a sample takes ~0.1 s (~3 s with tracemalloc); give up after 60 s
        lines_now = lines()
        if len(lines_now) > before:
            sample: dict[str, Any] = json.loads(lines_now[-1])
            return sample
        await asyncio.sleep(0.1)
    raise RuntimeError("the exporter's memory probe did not answer")


async def soak(n: int, args: argparse.Namespace, exporter: Target, scrape: Any) -> dict[str, Any]:
    """``/metrics`` back to back, as Prometheus scrapes a slow target: every SOAK_SAMPLE_EVERY scrapes RSS and
    the exporter's Python memory (bench/memwatch.py), and the least-squares slope of each over the second half
    (per 1,000 scrapes). Stops early at ``--soak-minutes``."""
    pid, probe = exporter.proc.pid, exporter.memwatch
    assert probe is not None, "a soak runs the exporter under bench/memwatch.py"
    samples: list[tuple[int, float]] = [(0, rss_bytes(pid) / 2**20)]
    python = [(0, await memory_sample(pid, probe))]
    stop_at = time.monotonic() + args.soak_minutes * 60
    started = time.monotonic()
    done = 0
    failed = 0
    while done < args.soak and time.monotonic() < stop_at:
        try:
            await scrape()
        except (AssertionError, aiohttp.ClientError, TimeoutError):
            failed += 1
        done += 1
        if done % SOAK_SAMPLE_EVERY == 0:
            samples.append((done, rss_bytes(pid) / 2**20))
            python.append((done, await memory_sample(pid, probe)))
    half = [(x, y) for x, y in samples if x >= done / 2]
    blocks = [(x, float(p["blocks"])) for x, p in python]
    objects = [(x, float(p["objects"])) for x, p in python]
    return {
        "n": n,
        "scrapes": done,
        "failed": failed,
        "seconds": time.monotonic() - started,
        "planned": args.soak,
        "rss_mib": [[x, round(y, 2)] for x, y in samples],
        "slope_second_half_mib_per_1000": slope(half) * 1000,
        "python_blocks": [[x, int(y)] for x, y in blocks],
        "gc_objects": [[x, int(y)] for x, y in objects],
        "blocks_slope_second_half_per_1000": slope([(x, y) for x, y in blocks if x >= done / 2]) * 1000,
        "objects_slope_second_half_per_1000": slope([(x, y) for x, y in objects if x >= done / 2]) * 1000,
        "collections": python[-1][1]["collections"],
        "pymalloc_arenas": [[x, p.get("pymalloc_arenas", -1)] for x, p in python],
        "c_heap_mib": [[x, {k: round(v / 2**20, 2) for k, v in p.get("c_heap", {}).items()}] for x, p in python],
        "tracemalloc_top": python[-1][1].get("top", []),
        "load_after": os.getloadavg()[0],
    }


# The exporter runs with the bound a large fleet sets (the default is unbounded, docs/scaling.md, "Scaling"): the
# figures in docs/benchmark/ were measured so; `--setting 'max_concurrency: 100000'` measures the unbounded default.
BENCH_SETTINGS = ["max_concurrency: 256"]

def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (0 for fewer than two points)."""
    if len(points) < 2:
        return 0.0
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def markdown(report: Report) -> str:
    m = report.machine
    out = [
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, Linux {m['kernel']}; load average "
        f"{m['load_before']:.1f} before, {m.get('load_after', 0):.1f} after (other work shares the cores: exporter, "
        "floor, lean and naive are interleaved round by round, and every ratio is taken within the run). Medians of "
        f"{report.rows[0].rounds if report.rows else 0} rounds after warm-up.",
        "",
        "| route | loop | N | latency | exporter wall | floor wall | naive wall | wall ÷ floor | lean wall "
        "| exporter CPU | floor CPU | lean CPU | naive CPU | CPU ÷ floor | CPU ÷ lean | CPU ÷ naive | RSS | floor RSS "
        "| lean RSS | naive RSS | body (gzip) | up | fleet CPU (exporter's round) | fleet CPU (lean's round) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def ms(x: float | None) -> str:
        return "—" if x is None else f"{x * 1e3:.1f} ms"

    def ratio(x: float | None) -> str:
        return "—" if x is None else f"{x:.2f} ×"

    def mib(x: float | None) -> str:
        return "—" if x is None else f"{x:.0f} MiB"

    for r in report.rows:
        per = " /charger" if r.route == "/probe" else ""
        out.append(
            f"| `{r.route}` | {r.loop} | {r.n} | {r.latency_ms} ms | {ms(r.exporter_wall)} | {ms(r.floor_wall)} | "
            f"{ms(r.naive_wall)} | {r.wall_ratio:.2f} × | {ms(r.lean_wall)} | {ms(r.exporter_cpu)}{per} | "
            f"{ms(r.floor_cpu)}{per} | {ms(r.lean_cpu)} | {ms(r.naive_cpu)} | {r.cpu_ratio:.2f} × | "
            f"{ratio(r.lean_ratio)} | {ratio(r.naive_ratio)} | {mib(r.rss_mib)} | {mib(r.floor_rss_mib)} | "
            f"{mib(r.lean_rss_mib)} | {mib(r.naive_rss_mib)} | {r.body_kib:.0f} KiB | {r.up}/{r.n} | "
            f"{ms(r.fleet_cpu)} | {ms(r.fleet_cpu_lean)} |"
        )
    out.append("")
    out.append(
        "`/metrics`: one scrape of all N chargers; floor: the same 4·N GETs at once, JSON decoded; lean: the same "
        "GETs, 64 in flight (a charger's four one after another on one kept-alive connection), JSON decoded; naive: "
        "one GET after another (— where a round would take over 6 s). Each baseline is a process of its own (its "
        f"RSS in its column). `/probe`: every charger once, {PROBE_CONCURRENCY} at a time; wall for all N, CPU per "
        f"charger; its floor fetches the chargers {PROBE_CONCURRENCY} at a time. CPU: user + sys of the process, "
        "all threads. Fleet CPU: the simulated chargers' process (one for all N) while it served that round; on "
        "two cores it competes with the client for them, so a round's wall is at least about (client CPU + fleet "
        "CPU) ÷ 2."
    )
    if report.soak:
        s = report.soak
        curve = ", ".join(f"{y:.1f}" for _, y in s["rss_mib"])
        out.append(
            f"\nSoak: {s['scrapes']} `/metrics` scrapes of {s['n']} chargers back to back in {s['seconds'] / 60:.0f} "
            f"min ({s['failed']} failed; load average {s['load_after']:.1f} at the end). RSS every "
            f"{SOAK_SAMPLE_EVERY} scrapes (MiB, from scrape 0): {curve}. Slope over the second half: "
            f"{s['slope_second_half_mib_per_1000']:+.3f} MiB per 1,000 scrapes."
        )
        if "python_blocks" in s:
            blocks = ", ".join(f"{y / 1000:.0f}" for _, y in s["python_blocks"])
            objects = ", ".join(f"{y / 1000:.0f}" for _, y in s["gc_objects"])
            out.append(
                f"\nThe exporter's Python memory at the same samples (bench/memwatch.py), thousands of allocated "
                f"blocks: {blocks}; objects the garbage collector tracks: {objects}. Slopes over the second half: "
                f"{s['blocks_slope_second_half_per_1000']:+.0f} blocks and "
                f"{s['objects_slope_second_half_per_1000']:+.0f} objects per 1,000 scrapes; collections per "
                f"generation: {s['collections']}."
            )
            arenas = ", ".join(str(y) for _, y in s.get("pymalloc_arenas", []))
            heap = ", ".join(f"{h.get('in_use', 0):.1f}/{h.get('free', 0):.1f}" for _, h in s.get("c_heap_mib", []))
            out.append(
                f"\nPython's arenas (1 MiB each) in use: {arenas}. glibc's heap, MiB in use / freed but kept: {heap}."
            )
            for top in s["tracemalloc_top"]:
                out.append(f"- {top['where']}: {top['size_diff'] / 1024:+.1f} KiB, {top['count_diff']:+d} blocks")
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
            for who, color in (("exporter", "C0"), ("floor", "C2"), ("lean", "C1"), ("naive", "C3")):
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
        f"pulsatrix-exporter vs floor, lean and naive — {report.machine['cpu']} ({report.machine['cores']} cores)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def run(args: argparse.Namespace) -> Report:
    report = Report(machine_info())
    sizes = args.sizes
    with tempfile.TemporaryDirectory(prefix="pulsatrix-bench-") as tmp:
        for latency, n, loop in itertools.product(args.latencies, sizes, args.loops):
            one = argparse.Namespace(**vars(args))
            first = n == max(sizes) and latency == args.latencies[0] and loop == args.loops[-1]
            one.soak = args.soak if first else 0
            os.environ[EVENT_LOOP_ENV] = loop  # the exporter and the baselines it is compared with run on it
            rows, soak_result = asyncio.run(measure(n, latency / 1000, one, Path(tmp)))
            for row in rows:
                row.loop = loop
                lean = f", lean {row.lean_ratio:4.2f}×" if row.lean_ratio else ""
                print(
                    f"{row.route:9} N={row.n:5d} {row.latency_ms:3d} ms: wall {row.exporter_wall * 1e3:8.1f} ms"
                    f" (floor {row.floor_wall * 1e3:7.1f}, {row.wall_ratio:4.2f}×)  CPU"
                    f" {row.exporter_cpu * 1e3:8.2f} ms (floor {row.floor_cpu * 1e3:7.2f}, {row.cpu_ratio:4.2f}×"
                    f"{lean})  RSS {row.rss_mib:.0f} MiB  up {row.up}/{row.n}  load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
            report.rows.extend(rows)
            report.soak = soak_result or report.soak
    report.machine["load_after"] = os.getloadavg()[0]
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="N = 1, 10 and 2 rounds: a smoke test")
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 10, 100, 1000])
    parser.add_argument("--latencies", type=lambda s: [int(x) for x in s.split(",")], default=[0, 200], help="ms")
    parser.add_argument(
        "--loops",
        type=lambda s: s.split(","),
        default=["asyncio", "uvloop"] if importlib.util.find_spec("uvloop") else ["asyncio"],
        help="event loops to measure on, each with its baselines on the same loop (default: asyncio,uvloop)",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--soak", type=int, default=0, help="then this many /metrics scrapes for the RSS trend")
    parser.add_argument("--soak-minutes", type=float, default=60.0, help="the soak stops after this long")
    parser.add_argument(
        "--soak-tracemalloc", action="store_true", help="trace the exporter's allocations in the soak (slower)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--exporter-arg", action="append", default=[], help="passed to the exporter")
    parser.add_argument(
        "--setting",
        action="append",
        default=None,
        help="a top-level config line (default: 'max_concurrency: 256', as README 'Scaling' advises for large fleets)",
    )
    parser.add_argument(
        "--exporter-src", type=Path, default=ROOT, help="run the exporter package found here (e.g. an older version)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.latencies, args.rounds, args.warmup = [1, 10], [0, 20], 2, 1
    report = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    data = {
        "machine": report.machine,
        "rows": [
            asdict(r) | {"cpu_ratio": r.cpu_ratio, "wall_ratio": r.wall_ratio, "lean_ratio": r.lean_ratio,
                         "naive_ratio": r.naive_ratio}
            for r in report.rows
        ],
        "soak": report.soak,
    }  # fmt: skip
    (args.out / "fleet.json").write_text(json.dumps(data, indent=1) + "\n")
    (args.out / "fleet.md").write_text(markdown(report))
    plot(report, args.out / "fleet.png")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
