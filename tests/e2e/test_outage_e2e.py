"""End to end, a depot as an operator sees it: two sites, one of them dark, one charger with a broken endpoint.

Eight simulated chargers, four at site ``north`` and four at ``south``, behind one exporter scraped as a whole in
a job that is *not* called ``pulsatrix-exporter`` (the rules are generated with other job names, as a user with
other names would). Prometheus runs the shipped rules (timing scaled from minutes to seconds) and sends to an
Alertmanager with the shipped grouping and inhibitions, whose receivers all post to a webhook on loopback.

- ``south`` goes dark (every endpoint of its four chargers answers 500): one notification for the site, none per
  charger;
- at ``north`` one charger answers 500 on ``limits`` only: a warning (partial data) that mutes none of its
  electrical alerts; another reports undervoltage; the other two stay healthy and silent;
- the exporter stops: every charger is counted as unmonitored, and no alert resolves because its data stopped.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from types import ModuleType
from typing import Any, TypeVar

import pytest
import yaml

from tests.support.e2e import Webhook, dashboards, expander, label_values, run_monitoring
from tests.support.fast_rules import SITES, fast_rules, shipped_alertmanager
from tests.support.servers import (
    Prometheus,
    Server,
    run_exporter,
    run_simulator,
    set_fault,
    simulator_names,
    write_config_for,
)

pytestmark = pytest.mark.e2e

JOB = "ev-exporter"  # the user's name for the exporter job
TIMEOUT = 60.0
T = TypeVar("T")


def generator() -> ModuleType:
    return importlib.import_module("deploy.prometheus.generate_rules")


@dataclass
class Depot:
    simulator: Server
    exporter: Server
    prometheus: Prometheus
    alertmanager: Server
    webhook: Webhook
    north: list[str]
    south: list[str]

    def context(self) -> str:
        parts = [f"Prometheus alerts: {json.dumps(self.prometheus.alerts(), indent=1)[-3000:]}"]
        parts.append(f"webhook got: {json.dumps(self.webhook.notifications, indent=1)[-3000:]}")
        for server in (self.exporter, self.prometheus, self.alertmanager):
            parts.append(f"--- {server.name} log tail:\n{server.log.read_text(errors='replace')[-1500:]}")
        return "\n".join(parts)

    def wait(self, what: str, check: Callable[[], T | None], timeout: float = TIMEOUT) -> T:
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                pytest.fail(f"{what}: not seen after {timeout:.0f}s\n{self.context()}")
            time.sleep(0.5)

    def firing(self, alertname: str, **labels: str) -> list[dict[str, Any]]:
        return [
            a
            for a in self.prometheus.alerts()
            if a["state"] == "firing"
            and a["labels"]["alertname"] == alertname
            and all(a["labels"].get(k) == v for k, v in labels.items())
        ]

    def history(self) -> set[tuple[str, str]]:
        """(alertname, charger) of every alert pending or firing so far."""
        result = self.prometheus.query("count by (alertname, charger) (count_over_time(ALERTS[10m]))")
        return {(s["metric"]["alertname"], s["metric"].get("charger", "")) for s in result}

    def notifications(self, site: str, status: str = "firing") -> list[dict[str, Any]]:
        return [
            n
            for n in self.webhook.notifications
            if n["status"] == status and any(a["labels"].get("site") == site for a in n["alerts"])
        ]

    def am_state(self, labels: dict[str, str]) -> str:
        """Post ``labels`` as an alert to Alertmanager; return its state there (active or suppressed)."""
        now = datetime.now(UTC)
        body = [{"labels": labels, "startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=5)).isoformat()}]
        request = urllib.request.Request(  # noqa: S310 - loopback
            f"{self.alertmanager.url}/api/v2/alerts",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5):  # noqa: S310
            pass
        # Alertmanager computes inhibitions when it lists the alerts: the state is final once the alert is listed.
        filters = [f'{k}="{v}"' for k, v in labels.items()]
        found = self.wait(
            f"{labels} listed by Alertmanager",
            lambda: [a for a in self.alertmanager.get("/api/v2/alerts", filter=filters[0]) if a["labels"] == labels],
        )
        assert len(found) == 1, found
        return str(found[0]["status"]["state"])

    def muted(self, alertname: str, chargers: list[str]) -> bool:
        """Whether Alertmanager has ``alertname`` of every one of ``chargers`` and lists each as suppressed."""
        listed = self.alertmanager.get("/api/v2/alerts", filter=f'alertname="{alertname}"')
        states = {a["labels"].get("charger"): a["status"]["state"] for a in listed}
        return all(states.get(charger) == "suppressed" for charger in chargers)


@pytest.fixture(scope="module")
def depot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Depot]:
    root = tmp_path_factory.mktemp("outage")
    with contextlib.ExitStack() as started:
        simulator = started.enter_context(run_simulator(root / "sim", chargers=8, seed=5))
        names = simulator_names(simulator)
        north, south = names[:4], names[4:]
        config_path = write_config_for(simulator, root / "exporter.yml", timeout=0.8)
        config = yaml.safe_load(config_path.read_text())
        for charger in config["chargers"]:
            charger["labels"] = {"site": "north" if charger["name"] in north else "south"}
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        exporter = started.enter_context(run_exporter(config_path, root / "exporter"))
        webhook = started.enter_context(Webhook().running())
        rules = generator().render({"exporter_selector": f'job="{JOB}"', "probe_selector": 'job="ev-probe"'})
        assert 'job="pulsatrix-exporter"' not in rules
        rule_files = [
            fast_rules(rules, root / "rules" / "alerts.yml", {"PulsatrixExporterAbsent": "15s"}),
            fast_rules(SITES.read_text(encoding="utf-8"), root / "rules" / "sites.yml"),
        ]
        monitoring = started.enter_context(
            run_monitoring(
                root,
                {
                    "scrape_configs": [
                        {"job_name": JOB, "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}]}
                    ]
                },
                rule_files=rule_files,
                alertmanager=shipped_alertmanager(webhook.url),
                chargers_up=len(names),
            )
        )
        assert monitoring.alertmanager is not None
        result = Depot(simulator, exporter, monitoring.prometheus, monitoring.alertmanager, webhook, north, south)
        for charger in south:
            set_fault(simulator, charger, "http_500")
        set_fault(simulator, north[0], "http_500", ["limits"])
        set_fault(simulator, north[1], "undervoltage")
        yield result


def test_a_dark_site_is_one_notification(depot: Depot) -> None:
    depot.wait("PulsatrixSiteDown for south", lambda: depot.firing("PulsatrixSiteDown", site="south"))
    # Its chargers' own alerts fire in Prometheus too, and would be notified now if nothing muted them.
    for charger in depot.south:
        depot.wait(
            f"PulsatrixChargerDown for {charger}", partial(depot.firing, "PulsatrixChargerDown", charger=charger)
        )
    depot.wait("a notification for south", lambda: depot.notifications("south"))
    # Alertmanager has every charger alert of the site, muted; one more group interval (1 s) would have sent any
    # other notification.
    depot.wait("south's charger alerts muted in Alertmanager", lambda: depot.muted("PulsatrixChargerDown", depot.south))
    depot.prometheus.wait_for_evaluation_after(time.time() + 2)
    [note] = depot.notifications("south")
    assert note["groupLabels"] == {"alertname": "PulsatrixSiteDown", "site": "south"}, note
    [alert] = note["alerts"]
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["description"].startswith('100% of the chargers of site "south" have given no data')
    # Only a quarter of north gives no data at all: no site alert there.
    assert not depot.firing("PulsatrixSiteDown", site="north")
    assert ("PulsatrixSiteDown", "") in depot.history()


def test_a_charger_with_partial_data_is_a_warning_that_mutes_nothing(depot: Depot) -> None:
    partial, undervolted = depot.north[0], depot.north[1]
    [failing] = depot.wait(
        "PulsatrixEndpointFailing", lambda: depot.firing("PulsatrixEndpointFailing", charger=partial)
    )
    assert failing["labels"]["endpoint"] == "limits" and failing["labels"]["severity"] == "warning"
    depot.wait("undervoltage", lambda: depot.firing("PulsatrixVoltageOutOfRange", charger=undervolted))
    depot.wait(
        "undervoltage at the webhook",
        lambda: [a for n in depot.notifications("north") for a in n["alerts"] if a["labels"]["charger"] == undervolted],
    )
    history = depot.history()
    assert ("PulsatrixChargerDown", partial) not in history, history
    # Healthy chargers stay silent; the exporter is found under the user's job name.
    for healthy in depot.north[2:]:
        assert not [h for h in history if h[1] == healthy], history
    assert not [h for h in history if h[0] == "PulsatrixExporterDown"], history
    # absent() may be pending for a moment before the first scrape after start-up, but never fires.
    fired = depot.prometheus.query('ALERTS{alertname="PulsatrixExporterAbsent", alertstate="firing"}[10m]')
    assert not fired, fired
    # An electrical alert of the partial charger is not muted by Alertmanager; the same alert of a charger that
    # gives no data at all is.
    ids = {k: failing["labels"][k] for k in ("charger", "instance", "job", "site")}
    reading = {"alertname": "PulsatrixVoltageOutOfRange", "severity": "warning", "phase": "L1"}
    assert depot.am_state({**reading, **ids}) == "active"
    dark = {**ids, "charger": depot.south[0], "site": "south"}
    assert depot.am_state({**reading, **dark}) == "suppressed"


def test_the_fleet_dashboard_finds_the_exporter_under_the_users_job_name(depot: Depot) -> None:
    fleet = dashboards()["pulsatrix-fleet.json"]
    variables = {v["name"]: v for v in fleet["templating"]["list"]}
    assert label_values(depot.prometheus, variables["job"]["definition"]) == [JOB]
    assert label_values(depot.prometheus, variables["exporter_job"]["definition"]) == [JOB]
    expand = expander(fleet, {"job": [JOB], "site": None, "charger": None, "exporter_job": [JOB]})
    panels = {p["title"]: p for p in fleet["panels"] + [c for p in fleet["panels"] for c in p.get("panels", [])]}

    def values(title: str) -> list[float]:
        return [
            float(s["value"][1]) for t in panels[title]["targets"] for s in depot.prometheus.query(expand(t["expr"]))
        ]

    assert values("Exporter processes up") == [1, 0]
    assert values("Exporter version") == [1]
    assert values("Unmonitored") == [0]
    assert values("Down") == [4]  # the dark site
    assert values("Partial data") == [1]


def test_a_stopped_exporter_leaves_chargers_unmonitored_and_alerts_unresolved(depot: Depot) -> None:
    """Runs last: it stops the exporter."""
    undervolted = depot.north[1]
    depot.wait("undervoltage", lambda: depot.firing("PulsatrixVoltageOutOfRange", charger=undervolted))
    depot.exporter.stop()
    depot.wait("PulsatrixExporterDown", lambda: depot.firing("PulsatrixExporterDown", job=JOB), timeout=20)
    unmonitored = "count(pulsatrix:charger_last_seen_timestamp_seconds unless on (charger, instance, job) pulsatrix_up)"
    depot.wait(
        "every charger unmonitored",
        lambda: [s for s in depot.prometheus.query(unmonitored) if float(s["value"][1]) == 8],
        timeout=20,
    )
    for charger in depot.north + depot.south:
        depot.wait(
            f"PulsatrixChargerUnmonitored for {charger}",
            partial(depot.firing, "PulsatrixChargerUnmonitored", charger=charger),
            timeout=20,
        )
    depot.prometheus.wait_for_evaluation_after(time.time() + 2)  # a few more evaluations, and a group interval
    assert depot.firing("PulsatrixVoltageOutOfRange", charger=undervolted), depot.context()
    assert depot.firing("PulsatrixSiteDown", site="south"), depot.context()
    resolved = [n for n in depot.webhook.notifications if n["status"] == "resolved"]
    assert not resolved, resolved
