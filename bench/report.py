"""Report benchmark: `report sessions` and `report summary` against a Prometheus holding a backfilled history.

    .venv/bin/python bench/report.py                                # 200 chargers, a year at 15 s (see below)
    .venv/bin/python bench/report.py --chargers 200 --days 7        # a week at full density (minutes)
    .venv/bin/python bench/report.py --quick                        # 3 chargers, 2 days at 60 s (the smoke test)

Steps: bench/ledger_data.py writes the series the exporter would have exposed (OpenMetrics, one file), promtool
backfills them (``promtool tsdb create-blocks-from openmetrics``, 31-day blocks), a local ``prometheus`` serves
the blocks on a loopback port, and the two commands run against it, timed by wall clock (median of ``--rounds``),
each checked against the generator's own sessions (count, start, end, kWh to 0.001). Writes report-bench.json and
report-bench.md to ``--out``.

The full size (200 chargers x 365 days x 15 s = 2.5 billion samples, ~100 GB of OpenMetrics text) takes hours to
generate and backfill; the README gives the sizes that were run and how the time scales with them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ledger_data import charger_name, timeline, write_openmetrics

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_735_689_600  # 2025-01-01T00:00:00Z: whole-day periods from here


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"prometheus exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/-/ready", timeout=2) as r:  # noqa: S310 (loopback)
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit("prometheus did not get ready")


def run_report(view: str, url: str, start: str, end: str) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "exporter",
        "report",
        view,
        "--prometheus",
        url,
        "--start",
        start,
        "--end",
        end,
        "--tz",
        "UTC",
        "--format",
        "json",
    ]
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3_600, check=False)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise SystemExit(f"report {view} failed ({out.returncode}): {out.stderr[-2000:]}")
    return wall, out.stdout


def check_sessions(rows: list[dict[str, object]], chargers: int, t1: int, spd: float, seed: int) -> int:
    """Compare with the generator; returns the number of mismatching sessions."""
    got: dict[str, list[dict[str, object]]] = {}
    for r in rows:
        got.setdefault(str(r["charger"]), []).append(r)
    bad = 0
    for c in range(chargers):
        truth = timeline(seed * 100_003 + c, T0, t1, spd)
        mine = got.get(charger_name(c), [])
        if len(mine) != len(truth):
            bad += abs(len(mine) - len(truth))
            continue
        for s, r in zip(truth, mine, strict=True):
            start = datetime.fromisoformat(str(r["start"])).timestamp()
            end = datetime.fromisoformat(str(r["end"])).timestamp() if r["end"] else None
            energy = r["energy_kwh"]
            if start != s.start or end != s.end or not isinstance(energy, float) or abs(energy - s.energy_kwh) > 1e-3:
                bad += 1
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chargers", type=int, default=200)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--interval", type=int, default=15, help="scrape interval of the generated data (s)")
    ap.add_argument("--sessions-per-day", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="3 chargers, 2 days at 60 s, 1 round")
    ap.add_argument(
        "--source",
        choices=("rules", "raw"),
        default="rules",
        help="rules: the recorded change series for the whole span (what deploy/prometheus/ledger.yml writes) and "
        "the raw series for the first and last day; raw: every raw sample, no rules (hours for a year)",
    )
    ap.add_argument("--out", type=Path, default=Path("."))
    ap.add_argument("--work", type=Path, help="keep the data and TSDB here (default: a temporary directory)")
    args = ap.parse_args()
    if args.quick:
        args.chargers, args.days, args.interval, args.rounds = 3, 2, 60, 1
    for binary in ("prometheus", "promtool"):
        if shutil.which(binary) is None:
            raise SystemExit(f"{binary} not found (Debian package prometheus)")
    work = args.work or Path(tempfile.mkdtemp(prefix="report-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    t1 = T0 + args.days * 86_400
    data, tsdb = work / "history.om", work / "tsdb"
    timings: dict[str, float] = {}
    t = time.perf_counter()
    with data.open("w") as f:
        if args.source == "rules":
            edges = [(T0, min(t1, T0 + 86_400)), (max(T0 + 86_400, t1 - 86_400), t1)]
            sessions = write_openmetrics(
                f, args.chargers, T0, t1, args.interval, args.sessions_per_day, raw=edges, recorded=True
            )
        else:
            sessions = write_openmetrics(f, args.chargers, T0, t1, args.interval, args.sessions_per_day)
    timings["generate_s"] = time.perf_counter() - t
    t = time.perf_counter()
    shutil.rmtree(tsdb, ignore_errors=True)
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=744h", str(data), str(tsdb)],
        check=True,
        capture_output=True,
    )
    timings["backfill_s"] = time.perf_counter() - t
    data.unlink()
    tsdb_bytes = sum(p.stat().st_size for p in tsdb.rglob("*") if p.is_file())
    port = free_port()
    config = work / "prometheus.yml"
    config.write_text("global: {}\n")
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tsdb}",
            "--storage.tsdb.retention.time=100y",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        start = datetime.fromtimestamp(T0, UTC).date().isoformat()
        end = datetime.fromtimestamp(t1, UTC).date().isoformat()
        results: dict[str, object] = {}
        for view in ("sessions", "summary"):
            walls = []
            out = ""
            for _ in range(args.rounds):
                wall, out = run_report(view, url, start, end)
                walls.append(wall)
            rows = json.loads(out)
            results[view] = {"wall_s": statistics.median(walls), "walls": walls, "rows": len(rows)}
            if view == "sessions":
                # the last day's sessions may run past the generated data: compared like the rest (all ended)
                results[view]["mismatches"] = check_sessions(rows, args.chargers, t1, args.sessions_per_day, 1)  # type: ignore[index]
    finally:
        proc.terminate()
        proc.wait(30)
    # the raw samples the exporter's session series take in a TSDB over the span (in rules mode most of them are
    # not written: the report does not read them)
    samples = args.chargers * args.days * 86_400 // args.interval * 6
    report = {
        "chargers": args.chargers,
        "source": args.source,
        "days": args.days,
        "interval_s": args.interval,
        "generated_sessions": sessions,
        "samples": samples,
        "tsdb_bytes": tsdb_bytes,
        "bytes_per_sample": round(tsdb_bytes / samples, 3),
        **timings,
        **results,
        "load": os.getloadavg(),
        "cores": os.cpu_count(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report-bench.json").write_text(json.dumps(report, indent=1) + "\n")
    md = [
        "| source | chargers | days | interval | sessions | raw samples | TSDB | sessions wall | summary wall "
        "| mismatches |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {args.source} | {args.chargers} | {args.days} | {args.interval} s | {sessions:,} | {samples:,} | "
        f"{tsdb_bytes / 1e6:.1f} MB | {results['sessions']['wall_s']:.2f} s | "  # type: ignore[index]
        f"{results['summary']['wall_s']:.2f} s | {results['sessions']['mismatches']} |",  # type: ignore[index]
    ]
    (args.out / "report-bench.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
