"""The fleet benchmark still runs and reports (its quick mode, N <= 10): the report's shape, never its timings."""

from __future__ import annotations

import json
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
    # N = 1 and 10, latency 0 and 20 ms, /metrics and /probe
    assert sorted((r["route"], r["n"], r["latency_ms"]) for r in rows) == sorted(
        (route, n, latency) for route in ("/metrics", "/probe") for n in (1, 10) for latency in (0, 20)
    )
    for row in rows:
        assert row["up"] == row["n"], row  # every simulated charger answered, every probe was a 200
        for key in ("exporter_wall", "exporter_cpu", "floor_wall", "floor_cpu", "cpu_ratio", "wall_ratio"):
            assert row[key] > 0, (key, row)
        assert (row["naive_wall"] is not None) == (row["route"] == "/metrics"), row
        assert (row["lean_ratio"] is not None) == (row["route"] == "/metrics"), row  # the lean client beside it
        assert row["rss_mib"] > 0 and row["floor_rss_mib"] > 0, row  # each process's RSS
    table = (tmp_path / "fleet.md").read_text()
    assert "| route | N | latency | exporter wall | floor wall | naive wall | wall ÷ floor | lean wall |" in table
    assert "| CPU ÷ floor | CPU ÷ lean | CPU ÷ naive | RSS | floor RSS | lean RSS | naive RSS |" in table
    assert len([line for line in table.splitlines() if line.startswith("| `/")]) == len(rows)
