"""End to end, the energy ledger on both engines: Prometheus scrapes the exporter (serving the simulator, 4
chargers at 100x speed: a session every 10 to 50 s), runs the ledger rules (deploy/prometheus/ledger.yml at 1 s
instead of 15 s) and remote-writes everything into VictoriaMetrics. `report` then gives the same rows from either
server, from the raw series and from the rules' change series alike; the shipped rule files load in vmalert."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.ledger import ROOT, fast_ledger_rules, report, run_victoriametrics
from tests.support.servers import (
    Prometheus,
    Server,
    find_binary,
    run_exporter,
    run_prometheus,
    run_simulator,
    write_config_for,
)

pytestmark = pytest.mark.e2e

RUN_S = 75.0


def vm_query(vm: Server, expr: str) -> list[dict[str, Any]]:
    answer = vm.get("/api/v1/query", query=expr)
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def test_report_rows_are_the_same_from_prometheus_and_victoriametrics(tmp_path: Path) -> None:
    with (
        run_victoriametrics(tmp_path / "vm") as vm,
        run_simulator(tmp_path / "sim", chargers=4, speed=100.0, seed=7) as sim,
    ):
        config = write_config_for(sim, tmp_path / "exporter.yml", timeout=0.8, labels={"site": "depot-e2e"})
        with run_exporter(config, tmp_path / "exporter") as exporter:
            prom_config = {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {"job_name": "pulsatrix", "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}]}
                ],
                "remote_write": [{"url": f"{vm.url}/api/v1/write", "queue_config": {"batch_send_deadline": "1s"}}],
            }
            rules = fast_ledger_rules(tmp_path)
            with run_prometheus(prom_config, tmp_path / "prom", rule_files=[rules]) as prom:
                began = time.time()
                prom.wait_for("pulsatrix:ledger_recording", timeout=30)
                time.sleep(RUN_S)
                exporter.stop()  # from here on nothing changes: both stores must end up with the same samples
                stopped = time.time()
                _wait_same_samples(prom, vm)
                _compare(prom, vm, began, stopped)


def _wait_same_samples(prom: Prometheus, vm: Server, timeout: float = 60.0) -> None:
    names = ("start_timestamp_seconds", "end_timestamp_seconds", "meter_start_joules", "energy_joules", "info")
    exprs = [f"sum(count_over_time(pulsatrix_session_{n}[10m]))" for n in names]
    exprs += ["sum(count_over_time(pulsatrix_energy_imported_joules_total[10m]))"]
    exprs += ["sum(count_over_time(pulsatrix_session_start_timestamp_seconds:changes[10m]))"]
    deadline = time.monotonic() + timeout
    while True:
        ours = [[r["value"][1] for r in prom.query(e)] for e in exprs]
        theirs = [[r["value"][1] for r in vm_query(vm, e)] for e in exprs]
        if all(ours) and ours == theirs:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"VictoriaMetrics never caught up: {ours} vs {theirs}")
        time.sleep(1)


def _compare(prom: Prometheus, vm: Server, began: float, stopped: float) -> None:
    # the rules were running from `began` (+ a few seconds): a period starting after that can use them
    start, end = began + 5, stopped - 2
    results: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for name, server in (("prometheus", prom), ("victoriametrics", vm)):
        for source in ("raw", "rules"):
            for view in ("sessions", "summary"):
                code, rows, err = report(view, server.url, start, end, "--source", source)
                assert code == 0, f"{name} {source} {view}: {err}"
                results[(name, source, view)] = rows
    sessions = results[("prometheus", "raw", "sessions")]
    ended = [r for r in sessions if r["status"] == "ended"]
    assert len(ended) >= 4, f"too few sessions in {RUN_S} s: {sessions}"
    # every charger has a summary row, whether or not one of its sessions ended in the window
    summary = results[("prometheus", "raw", "summary")]
    assert len(summary) == 4 and {r["charger"] for r in ended} <= {r["charger"] for r in summary}
    for r in ended:
        assert r["site"] == "depot-e2e" and r["energy_kwh"] is not None and r["energy_kwh"] >= 0
        assert r["meter_stop_kwh"] == pytest.approx(r["meter_start_kwh"] + r["energy_kwh"], abs=0.002)
    for key, rows in results.items():
        reference = results[("prometheus", "raw", key[2])]
        ours, theirs = [json.dumps(r, sort_keys=True) for r in rows], [json.dumps(r, sort_keys=True) for r in reference]
        only = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
        assert ours == theirs, f"{key} differs from Prometheus (raw): only here {only[0]}, only there {only[1]}"


def test_the_shipped_rule_files_load_in_vmalert(tmp_path: Path) -> None:
    vmalert = find_binary("vmalert")
    rules = [f"-rule={ROOT / 'deploy' / 'prometheus' / n}" for n in ("alerts.yml", "sites.yml", "ledger.yml")]
    result = subprocess.run(
        [vmalert, *rules, "-dryRun", "-loggerLevel=ERROR"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
