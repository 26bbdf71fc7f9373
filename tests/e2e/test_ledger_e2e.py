"""End to end, the energy ledger as an HA pair stores it: the scripted simulator (its session log is the ground
truth), the exporter, and two Prometheus replicas with prometheus-operator's external labels (`prometheus`,
`prometheus_replica`), each scraping the exporter, running the ledger rules (deploy/prometheus/ledger.yml at 1 s)
and remote-writing into one VictoriaMetrics. In the middle of one session the charger's `site` is changed by an
exporter reload, in the middle of another both replicas move from the `/metrics` job to `/probe` targets. `report`
then lists each session once, with the device's kWh, from VictoriaMetrics (both copies) and from one replica alike,
from the raw series and from the rules' change series alike, against the simulator's own log (start, end, kWh and
meter readings to 0.001). Every wait is for an event: a line in the session log, a sample on a server. The shipped
rule files load in vmalert."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.ledger import ROOT, fast_ledger_rules, report, run_victoriametrics
from tests.support.servers import Prometheus, Server, find_binary, free_port, run_exporter, run_prometheus

pytestmark = pytest.mark.e2e

# Idle gaps of 3 s and more (longer than a scrape, 1 s), sessions long enough to change labels in their middle.
SCRIPT: dict[str, Any] = {
    "chargers": [
        {
            "name": "bay",
            "meter_start_kwh": 52.5,
            "sessions": [{"after": 3, "duration": 6, "power": 22000}, {"after": 3, "duration": 3, "power": 7400}],
        },
        {
            "name": "home",
            "meter_start_kwh": 1200.0,
            "sessions": [{"after": 4, "duration": 8, "power": 11000}, {"after": 3, "duration": 3, "power": 3700}],
        },
    ]
}
SESSIONS = sum(len(c["sessions"]) for c in SCRIPT["chargers"])
REPLICAS = ("prometheus-k8s-0", "prometheus-k8s-1")


def events(log: Path, kind: str) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [e for e in lines if e["event"] == kind]


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
    return result


def exporter_config(path: Path, sim: Server, site: str) -> None:
    chargers = [
        {"name": c["name"], "url": f"{sim.url}/{c['name']}", "labels": {"site": site if c["name"] == "bay" else "home"}}
        for c in SCRIPT["chargers"]
    ]
    path.write_text(yaml.safe_dump({"timeout": 0.8, "chargers": chargers}))


def prometheus_config(exporter: Server, vm: Server, replica: str, probe: bool) -> dict[str, Any]:
    target = f"127.0.0.1:{exporter.port}"
    if probe:
        job: dict[str, Any] = {
            "job_name": "pulsatrix",
            "metrics_path": "/probe",
            "static_configs": [{"targets": [c["name"] for c in SCRIPT["chargers"]]}],
            "relabel_configs": [
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["__param_target"], "target_label": "instance"},
                {"target_label": "__address__", "replacement": target},
            ],
        }
    else:
        job = {"job_name": "pulsatrix-exporter", "static_configs": [{"targets": [target]}]}
    return {
        "global": {
            "scrape_interval": "1s",
            "scrape_timeout": "1s",
            "evaluation_interval": "1s",
            "external_labels": {"prometheus": "monitoring/k8s", "prometheus_replica": replica},
        },
        "scrape_configs": [job],
        "remote_write": [{"url": f"{vm.url}/api/v1/write", "queue_config": {"batch_send_deadline": "1s"}}],
    }


def test_an_ha_pair_with_a_site_change_and_a_job_move_lists_each_session_once(tmp_path: Path) -> None:
    script, log = tmp_path / "script.yml", tmp_path / "sessions.jsonl"
    script.write_text(yaml.safe_dump(SCRIPT, sort_keys=False))
    port = free_port()
    sim_log = tmp_path / "simulator.log"
    command = [sys.executable, "-m", "exporter", "simulate", "--script", str(script), "--session-log", str(log)]
    with sim_log.open("wb") as out:
        proc = subprocess.Popen([*command, f"--listen=127.0.0.1:{port}"], stdout=out, stderr=out, cwd=ROOT)
    sim = Server("simulator", proc, port, tmp_path, sim_log)
    try:
        config = tmp_path / "exporter.yml"
        exporter_config(config, sim, "north")
        began = time.time()
        with run_victoriametrics(tmp_path / "vm") as vm, run_exporter(config, tmp_path / "exporter") as exporter:
            rules = fast_ledger_rules(tmp_path)
            with (
                run_prometheus(prometheus_config(exporter, vm, REPLICAS[0], False), tmp_path / "p0", [rules]) as p0,
                run_prometheus(prometheus_config(exporter, vm, REPLICAS[1], False), tmp_path / "p1", [rules]) as p1,
            ):
                # mid-session of bay's first: a reload gives it site=south
                first_bay = wait_for(lambda: _started(log, "bay", 1), 60, "bay's first session")
                wait_for(lambda: _seen(p0, first_bay["start"]) and _seen(p1, first_bay["start"]), 30, "it scraped")
                exporter_config(config, sim, "south")
                os.kill(exporter.proc.pid, signal.SIGHUP)
                wait_for(lambda: p0.query('pulsatrix_session_start_timestamp_seconds{site="south"}'), 30, "south")
                # mid-session of home's first: both replicas move from /metrics to /probe targets
                first_home = wait_for(lambda: _started(log, "home", 1), 60, "home's first session")
                wait_for(lambda: _seen(p0, first_home["start"]) and _seen(p1, first_home["start"]), 30, "scraped")
                for prom, replica in ((p0, REPLICAS[0]), (p1, REPLICAS[1])):
                    _reload(prom, prometheus_config(exporter, vm, replica, True))
                wait_for(lambda: p0.query('pulsatrix_session_start_timestamp_seconds{job="pulsatrix"}'), 30, "probe")
                truth = wait_for(lambda: len(events(log, "stop")) == SESSIONS and events(log, "stop"), 90, "stops")
                last_end = max(e["end"] for e in truth)
                for prom in (p0, p1):  # the last end scraped and recorded by both replicas
                    wait_for(partial(_recorded_end, prom, last_end), 30, "the last end recorded")
                exporter.stop()  # from here on nothing changes
                stopped = time.time()
                _wait_same_count(p0, p1, vm)
                _compare(p0, vm, began - 30, stopped + 1, truth)
    finally:
        sim.stop()


def _started(log: Path, charger: str, n: int) -> dict[str, Any] | None:
    starts = [e for e in events(log, "start") if e["charger"] == charger]
    return starts[n - 1] if len(starts) >= n else None


def _seen(prom: Prometheus, start: float) -> bool:
    return any(float(r["value"][1]) == start for r in prom.query("pulsatrix_session_start_timestamp_seconds"))


def _recorded_end(prom: Prometheus, end: float) -> bool:
    expr = "last_over_time(pulsatrix_session_end_timestamp_seconds:changes[1m])"
    return any(float(r["value"][1]) == end for r in prom.query(expr))


def _reload(prom: Prometheus, config: dict[str, Any]) -> None:
    path = prom.workdir / "prometheus.yml"
    rules = yaml.safe_load(path.read_text())["rule_files"]
    path.write_text(yaml.safe_dump({**config, "rule_files": rules}, sort_keys=False))
    request = urllib.request.Request(f"{prom.url}/-/reload", method="POST")  # noqa: S310 (loopback)
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.status == 200


def _wait_same_count(p0: Prometheus, p1: Prometheus, vm: Server) -> None:
    """VictoriaMetrics holds both replicas' samples: its count is the sum of theirs."""
    names = ("start_timestamp_seconds", "end_timestamp_seconds", "energy_joules", "info")
    exprs = [f"sum(count_over_time(pulsatrix_session_{n}[10m]))" for n in names]
    exprs += ["sum(count_over_time(pulsatrix_energy_imported_joules_total[10m]))"]
    exprs += ["sum(count_over_time(pulsatrix_session_end_timestamp_seconds:changes[10m]))"]

    def caught_up() -> bool:
        for expr in exprs:
            mine = sum(float(r["value"][1]) for p in (p0, p1) for r in p.query(expr))
            answer = vm.get("/api/v1/query", query=expr)["data"]["result"]
            if not mine or [float(r["value"][1]) for r in answer] != [mine]:
                return False
        return True

    wait_for(caught_up, 60, "VictoriaMetrics to hold both replicas' samples")


def _compare(p0: Prometheus, vm: Server, start: float, end: float, truth: list[dict[str, Any]]) -> None:
    results: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for name, server in (("prometheus", p0), ("victoriametrics", vm)):
        for source in ("raw", "rules"):
            for view in ("sessions", "summary"):
                args = ("--source", source) + (("--by", "site") if view == "summary" else ())
                code, rows, err = report(view, server.url, start, end, *args)
                assert code == 0, f"{name} {source} {view}: {err}"
                # a replica's own answers carry no external labels; the store's do
                results[(name, source, view)] = [
                    {k: v for k, v in r.items() if k not in ("prometheus", "source")} for r in rows
                ]
    for source in ("raw", "rules"):  # the simulator's own log: start, end and meter readings as it served them
        _against_truth(results[("victoriametrics", source, "sessions")], truth, source)
    sessions = results[("victoriametrics", "rules", "sessions")]
    ours = sorted(((r["charger"], r["site"], r["energy_kwh"], r["status"]) for r in sessions), key=str)
    first_bay = min(e["start"] for e in truth if e["charger"] == "bay")
    theirs = sorted(
        (
            e["charger"],
            "north" if e["start"] == first_bay else ("south" if e["charger"] == "bay" else "home"),
            round(e["energy_kwh"], 3),
            "ended",
        )
        for e in truth
    )
    theirs = sorted(theirs, key=str)
    assert ours == theirs, (sessions, truth)  # each once, under the labels it began with
    by_site = {r["site"]: r for r in results[("victoriametrics", "rules", "summary")]}
    assert by_site["home"]["energy_kwh"] == pytest.approx(
        sum(e["energy_kwh"] for e in truth if e["charger"] == "home"), abs=0.002
    )
    assert by_site["north"]["sessions"] + by_site["south"]["sessions"] == 2
    bay = sum(e["energy_kwh"] for e in truth if e["charger"] == "bay")
    assert by_site["north"]["energy_kwh"] + by_site["south"]["energy_kwh"] == pytest.approx(bay, abs=0.002)
    assert by_site["north"]["energy_kwh"] > 0 and by_site["south"]["energy_kwh"] > 0  # split at the change
    for (name, source, view), rows in results.items():
        # the sessions alike everywhere; a summary split at the label change alike from both sources of a server
        # (one replica alone has only its own scrapes, so its last reading before the change may be another)
        reference = results[("victoriametrics", "rules", view) if view == "sessions" else (name, "raw", view)]
        assert rows == reference, f"{(name, source, view)} differs"


def _against_truth(rows: list[dict[str, Any]], truth: list[dict[str, Any]], source: str) -> None:
    def ts(text: str) -> float:
        return datetime.fromisoformat(text).timestamp()

    ours = sorted(rows, key=lambda r: (r["charger"], ts(r["start"])))
    theirs = sorted(truth, key=lambda e: (e["charger"], e["start"]))
    assert len(ours) == len(theirs) == SESSIONS, (source, ours, theirs)
    for row, event in zip(ours, theirs, strict=True):
        where = (source, row, event)
        assert row["charger"] == event["charger"] and row["status"] == "ended", where
        assert ts(row["start"]) == round(event["start"]), where
        assert row["end"] is not None and ts(row["end"]) == round(event["end"]), where
        assert row["energy_kwh"] == pytest.approx(event["energy_kwh"], abs=0.001), where
        assert row["meter_start_kwh"] == pytest.approx(event["meter_start_kwh"], abs=0.001), where
        assert row["meter_stop_kwh"] == pytest.approx(event["meter_stop_kwh"], abs=0.001), where


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
