"""Ground truth for the ledger: the simulator's scripted sessions (`simulate --script`, README "Scripted sessions") in
real time under a real Prometheus (1 s scrapes, the ledger rules at 1 s), and `report sessions` against the
simulator's own session log: the same sessions, the same start and end, the same kWh to 0.001, from the raw series
and from the rules' change series alike."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.ledger import fast_ledger_rules, report
from tests.support.servers import Server, free_port, run_exporter, run_prometheus

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# Idle gaps of 3 s and more: longer than a scrape (1 s), so every state is scraped.
SCRIPT: dict[str, Any] = {
    "chargers": [
        {
            "name": "home",
            "meter_start_kwh": 1200.0,
            "sessions": [
                {"after": 3, "duration": 6, "power": 11000},
                {"after": 4, "duration": 9, "power": 3700},
                {"after": 3, "duration": 5, "power": 7400},
            ],
        },
        {
            "name": "depot-1",
            "meter_start_kwh": 52.5,
            "sessions": [{"after": 5, "duration": 12, "power": 22000}, {"after": 6, "duration": 4, "power": 1400}],
        },
    ]
}
SESSIONS = sum(len(c["sessions"]) for c in SCRIPT["chargers"])


def scripted_mode_available() -> bool:
    run = subprocess.run(
        [sys.executable, "-m", "exporter", "simulate", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    return "--script" in run.stdout


def wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def stops(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [e for e in events if e["event"] == "stop"]


def test_report_rows_equal_the_simulators_session_log(tmp_path: Path) -> None:
    if not scripted_mode_available():
        pytest.skip("the simulator's scripted-sessions mode (branch `sim`, issue 17) is not in this tree yet")
    script, log = tmp_path / "script.yml", tmp_path / "sessions.jsonl"
    script.write_text(yaml.safe_dump(SCRIPT, sort_keys=False))
    port = free_port()
    sim_log = tmp_path / "simulator.log"
    with sim_log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exporter",
                "simulate",
                "--script",
                str(script),
                "--session-log",
                str(log),
                f"--listen=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    sim = Server("simulator", proc, port, tmp_path, sim_log)
    try:
        began = time.time()
        chargers = [{"name": c["name"], "url": f"{sim.url}/{c['name']}"} for c in SCRIPT["chargers"]]
        config = tmp_path / "exporter.yml"
        config.write_text(yaml.safe_dump({"timeout": 0.8, "chargers": chargers}))
        with run_exporter(config, tmp_path / "exporter") as exporter:
            prom_config = {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {"job_name": "pulsatrix", "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}]}
                ],
            }
            with run_prometheus(prom_config, tmp_path / "prom", rule_files=[fast_ledger_rules(tmp_path)]) as prom:
                wait_for(lambda: len(stops(log)) == SESSIONS, 120, f"{SESSIONS} stops in {log}")
                time.sleep(4)  # the last end is scraped and recorded
                truth = stops(log)
                for source in ("raw", "rules"):
                    # The rules record a change one evaluation after the scrape that saw it; on a loaded machine
                    # Prometheus may evaluate late, so ask again (bounded: 20 s) until every session is there.
                    deadline = time.monotonic() + 20
                    while True:
                        code, rows, err = report("sessions", prom.url, began - 60, time.time() + 1, "--source", source)
                        assert code == 0, err
                        if len(rows) >= SESSIONS or time.monotonic() > deadline:
                            break
                        time.sleep(1)
                    compare(rows, truth, source)
    finally:
        sim.stop()


def compare(rows: list[dict[str, Any]], truth: list[dict[str, Any]], source: str) -> None:
    def ts(text: str) -> float:
        return datetime.fromisoformat(text).timestamp()

    ours = sorted(rows, key=lambda r: (r["charger"], ts(r["start"])))
    theirs = sorted(truth, key=lambda e: (e["charger"], e["start"]))
    assert len(ours) == len(theirs) == SESSIONS, (source, ours, theirs)
    for row, event in zip(ours, theirs, strict=True):
        where = (source, row, event)
        assert row["charger"] == event["charger"], where
        assert row["status"] == "ended", where
        assert ts(row["start"]) == round(event["start"]), where
        assert row["end"] is not None and ts(row["end"]) == round(event["end"]), where
        assert row["energy_kwh"] == pytest.approx(event["energy_kwh"], abs=0.001), where
        assert row["meter_start_kwh"] == pytest.approx(event["meter_start_kwh"], abs=0.001), where
        assert row["meter_stop_kwh"] == pytest.approx(event["meter_stop_kwh"], abs=0.001), where
