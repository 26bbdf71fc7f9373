"""The report benchmark still runs and matches its generator (quick mode: 3 chargers, 2 days): never its timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import find_binary

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("source", ["rules", "raw"])
def test_quick_report_benchmark_runs_and_every_session_matches(tmp_path: Path, source: str) -> None:
    find_binary("prometheus")
    find_binary("promtool")
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "report.py"), "--quick", "--source", source, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / "report-bench.json").read_text())
    assert (result["chargers"], result["days"], result["source"]) == (3, 2, source)
    assert result["sessions"]["rows"] == result["generated_sessions"] > 10
    assert result["sessions"]["mismatches"] == 0
    assert result["summary"]["rows"] == 3
    assert (tmp_path / "report-bench.md").read_text().startswith("| source | chargers | days |")
