"""Helpers of the energy-ledger e2e tests: the ledger rules at a test's pace, VictoriaMetrics on loopback, and
`pulsatrix-exporter report` run as a user runs it."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.support.servers import Server, find_binary, free_port, wait_until_ready

ROOT = Path(__file__).resolve().parents[2]
LEDGER = ROOT / "deploy" / "prometheus" / "ledger.yml"


def fast_ledger_rules(workdir: Path, interval: int = 1) -> Path:
    """ledger.yml at the test's pace: its 15 s evaluation at ``interval`` seconds, its look back of two
    evaluations (``offset 30s``) at twice that."""
    text = LEDGER.read_text(encoding="utf-8")
    text = text.replace("offset 30s", f"offset {2 * interval}s").replace("15s", f"{interval}s")
    path = workdir / "ledger.yml"
    path.write_text(text, encoding="utf-8")
    return path


@contextlib.contextmanager
def run_victoriametrics(workdir: Path) -> Iterator[Server]:
    binary = find_binary("victoria-metrics")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = workdir / "victoria-metrics.log"
    command = [
        binary,
        f"-storageDataPath={workdir / 'vm-data'}",
        f"-httpListenAddr=127.0.0.1:{port}",
        "-retentionPeriod=100y",
        "-search.latencyOffset=0s",  # answer with the newest samples (default: hide the last 30 s)
        "-search.disableCache",
        "-loggerLevel=WARN",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    server = Server("victoria-metrics", proc, port, workdir, log)
    try:
        wait_until_ready(f"{server.url}/health", proc, log)
        yield server
    finally:
        server.stop()


def report(view: str, url: str, start: float, end: float, *extra: str) -> tuple[int, list[dict[str, Any]], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def iso(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")

    cmd = [
        sys.executable,
        "-m",
        "exporter",
        "report",
        view,
        "--prometheus",
        url,
        "--start",
        iso(start),
        "--end",
        iso(end),
        "--tz",
        "UTC",
        "--format",
        "json",
        "--lookback",
        "30",
        *extra,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)
    rows = json.loads(out.stdout) if out.returncode == 0 and out.stdout else []
    return out.returncode, rows, out.stderr
