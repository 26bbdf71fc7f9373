"""The fleet benchmark still runs and reports (its quick mode, N <= 10): the report's shape, never its timings."""

from __future__ import annotations

import importlib.util
import json
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_benchmark_runs_and_reports(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "fleet.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((tmp_path / "fleet.json").read_text())
    assert set(report["machine"]) >= {"cpu", "cores", "python", "load_before", "load_after"}
    rows = report["rows"]
    # N = 1 and 10, latency 0 and 20 ms, /metrics and /probe, on each event loop (its baselines on the same one)
    loops = ("asyncio", "uvloop") if importlib.util.find_spec("uvloop") else ("asyncio",)
    assert sorted((r["route"], r["n"], r["latency_ms"], r["loop"]) for r in rows) == sorted(
        (route, n, latency, loop)
        for route in ("/metrics", "/probe")
        for n in (1, 10)
        for latency in (0, 20)
        for loop in loops
    )
    for row in rows:
        assert row["up"] == row["n"], row  # every simulated charger answered, every probe was a 200
        for key in ("exporter_wall", "exporter_cpu", "floor_wall", "floor_cpu", "cpu_ratio", "wall_ratio"):
            assert row[key] > 0, (key, row)
        assert (row["naive_wall"] is not None) == (row["route"] == "/metrics"), row
        assert (row["lean_ratio"] is not None) == (row["route"] == "/metrics"), row  # the lean client beside it
        assert row["rss_mib"] > 0 and row["floor_rss_mib"] > 0, row  # each process's RSS
        if row["route"] == "/metrics":  # what the simulated chargers spent serving the exporter and the lean client
            assert row["fleet_cpu"] > 0 and row["fleet_cpu_lean"] > 0, row
    table = (tmp_path / "fleet.md").read_text()
    assert "| route | loop | N | latency | exporter wall | floor wall | naive wall | wall ÷ floor |" in table
    assert "| CPU ÷ floor | CPU ÷ lean | CPU ÷ naive | RSS | floor RSS | lean RSS | naive RSS |" in table
    assert "| fleet CPU (exporter's round) | fleet CPU (lean's round) |" in table
    assert len([line for line in table.splitlines() if line.startswith("| `/")]) == len(rows)


def run_bench(*args: str) -> None:
    run = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=180, check=False)
    assert run.returncode == 0, run.stderr[-3000:]


def test_soak_samples_the_exporters_own_memory(tmp_path: Path) -> None:
    """RSS alone cannot say what grows: every sample also holds the exporter's Python blocks, its arenas and the C
    heap beneath them (bench/memwatch.py, inside the exporter's process)."""
    run_bench(str(ROOT / "bench" / "fleet.py"), "--sizes", "3", "--latencies", "0", "--rounds", "1", "--warmup",
              "1", "--soak", "200", "--out", str(tmp_path))  # fmt: skip
    soak = json.loads((tmp_path / "fleet.json").read_text())["soak"]
    assert soak["scrapes"] == 200 and soak["failed"] == 0
    assert [x for x, _ in soak["python_blocks"]] == [0, 100, 200]
    assert all(blocks > 10_000 for _, blocks in soak["python_blocks"])
    assert all(arenas > 0 for _, arenas in soak["pymalloc_arenas"])
    if platform.libc_ver()[0] == "glibc":  # mallinfo2: glibc's heap beneath Python's allocator
        assert all(heap["in_use"] > 0 for _, heap in soak["c_heap_mib"])
    assert "allocated blocks:" in (tmp_path / "fleet.md").read_text()


def test_client_paths_reports_every_variant_against_the_lean_client(tmp_path: Path) -> None:
    run_bench(str(ROOT / "bench" / "client_paths.py"), "--chargers", "4", "--rounds", "1", "--out", str(tmp_path))
    variants = json.loads((tmp_path / "client_paths.json").read_text())["variants"]
    assert set(variants) == {
        "aiohttp-lean", "aiohttp-floor", "aiohttp+gc", "fetch", "fetch+gc", "fetch+gc-256", "fetch+gc-lean", "raw+gc"
    }  # fmt: skip
    assert all(v["cpu"] > 0 and v["cpu_per_get_us"] > 0 and v["cpu_vs_lean"] > 0 for v in variants.values())
    table = (tmp_path / "client_paths.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == list(variants)  # one row per variant, in the measured order


def test_before_and_after_reports_both_checkouts_and_what_their_gets_alone_cost(tmp_path: Path) -> None:
    """bench/ab.py with this checkout on both sides: every figure of both, the own share (scrape minus the same
    GETs through the exporter's client code) below the scrape's CPU, one row per loop and side."""
    run_bench(
        str(ROOT / "bench" / "ab.py"), "--before", str(ROOT), "--chargers", "4", "--rounds", "1", "--warmup", "0",
        "--loops", "asyncio", "--out", str(tmp_path),
    )  # fmt: skip
    result = json.loads((tmp_path / "ab.json").read_text())
    (run,) = result["runs"]
    assert run["loop"] == "asyncio"
    for side in ("before", "after"):
        row = run[side]
        assert row["metrics_cpu"] > 0 and row["client_cpu"] > 0 and row["probe_cpu"] > 0 and row["rss_mib"] > 0
        assert row["own_cpu"] == row["metrics_cpu"] - row["client_cpu"]
    table = (tmp_path / "ab.md").read_text()
    assert [line.split(" | ")[1] for line in table.splitlines() if line.startswith("| asyncio")] == [
        "before", "after", "after ÷ before"
    ]  # fmt: skip


def test_the_by_hand_benchmarks_still_run(tmp_path: Path) -> None:
    """Small versions of bench/reload_load.py and bench/config_load.py, so that a change to the exporter's command
    line or config cannot break them unnoticed (the lifecycle flag once did): they run and report, never timed."""
    reload = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "reload_load.py"), "--chargers", "300", "--reloads", "1"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert reload.returncode == 0, reload.stderr[-3000:]
    result = json.loads(reload.stdout.strip().splitlines()[-1])
    assert result["chargers"] == 300 and len(result["wall_s"]) == 1
    assert result["probes"] > 0 and result["failed"] == 0  # probed all along, none dropped by the reload
    load = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "config_load.py"), "--chargers", "300", "--rounds", "1"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert load.returncode == 0, load.stderr[-3000:]
    for way in ("load_config ", "--check-config ", "load_config, pure YAML "):
        assert any(line.strip().startswith(way) and "wall median" in line for line in load.stdout.splitlines()), way


def test_the_pipeline_benchmark_reports_each_stage() -> None:
    """bench/pipeline.py (the exporter's own work per charger: parse, record, families, exposition, gzip) still runs."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "pipeline.py"), "--chargers", "10", "--rounds", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("N = 10, 2 rounds, CPU µs per charger (median): parse ")
    for stage in ("record", "families", "exposition", "gzip", "total"):
        assert f", {stage} " in run.stdout
