"""End to end: simulated chargers → exporter → Prometheus with the shipped alert rules → Alertmanager → a webhook.

Prometheus follows the README's job convention in the ``/probe`` setup: job ``pulsatrix`` probes each charger
(``instance`` = charger name) through the exporter, job ``pulsatrix-exporter`` scrapes the exporter's own
``/-/metrics``. One simulated charger is made unreachable (HTTP 500), another reports a fault (IEC 61851 status
F); the alerts must fire in Prometheus and reach the webhook with the failed charger's labels and annotations, the
healthy charger and the exporter must never alert, and the charger-down alert must resolve once the charger answers
again. Last, the exporter process is stopped: PulsatrixExporterDown must fire once for it, not once per charger,
the chargers' failing probes must not raise PulsatrixProbeFailing on top, every charger must be reported
unmonitored, and the faulted charger's alert must stay firing (no "resolved" for an alert whose data merely
stopped). The rules are the shipped ones with their timing scaled from minutes to seconds (tests/support/fast_rules.py).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from tests.support.docs import ROOT, page_with
from tests.support.e2e import Webhook, run_monitoring
from tests.support.fast_rules import fast_for, shipped_fast_rules
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

# absent() is true until the first scrape of the exporter job after Prometheus starts; a longer `for:` keeps a slow
# first scrape on a busy machine from firing it (the healthy test checks that it never fires).
FOR_OVERRIDES = {"PulsatrixExporterAbsent": "15s"}
EXPORTER_JOB, PROBE_JOB = "pulsatrix-exporter", "pulsatrix"
TIMEOUT = 60.0
SITE = "e2e-site"
# Chargers from `simulate --chargers 3`: garage (OpenAPI firmware), carport (prose-doc firmware: single-letter
# vehicle status), visitor-bay (single-phase). The first two are broken by the fixture, the third stays healthy.
DOWN, FAULTED, HEALTHY = "garage", "carport", "visitor-bay"

T = TypeVar("T")


@dataclass
class Stack:
    simulator: Server
    exporter: Server
    prometheus: Prometheus
    alertmanager: Server
    webhook: Webhook

    def context(self) -> str:
        """What to show when a wait fails: Prometheus' alerts, the webhook's notifications and the log tails."""
        parts = [f"Prometheus alerts: {json.dumps(self.prometheus.alerts(), indent=1)[-3000:]}"]
        parts.append(f"webhook got: {json.dumps(self.webhook.alerts(), indent=1)[-3000:]}")
        for server in (self.simulator, self.exporter, self.prometheus, self.alertmanager):
            parts.append(f"--- {server.name} log tail:\n{server.log.read_text(errors='replace')[-2000:]}")
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

    def firing(self, alertname: str, charger: str) -> dict[str, Any] | None:
        for alert in self.prometheus.alerts():
            labels = alert["labels"]
            if labels.get("alertname") == alertname and labels.get("charger") == charger and alert["state"] == "firing":
                return alert
        return None

    def notified(self, alertname: str, charger: str | None, status: str = "firing") -> dict[str, Any] | None:
        for alert in self.webhook.alerts():
            labels = alert["labels"]
            if labels.get("alertname") == alertname and labels.get("charger") == charger and alert["status"] == status:
                return alert
        return None

    def exporter_target(self) -> str:
        return f"127.0.0.1:{self.exporter.port}"

    def alert_history(self) -> set[tuple[str, str, str, str]]:
        """(alertname, charger, job, alertstate) of every alert Prometheus has had pending or firing so far ("" for
        a missing label)."""
        query = "count by (alertname, charger, job, alertstate) (count_over_time(ALERTS[10m]))"
        labels = [s["metric"] for s in self.prometheus.query(query)]
        return {
            (m.get("alertname", ""), m.get("charger", ""), m.get("job", ""), m.get("alertstate", "")) for m in labels
        }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("alerting")
    with contextlib.ExitStack() as started:
        simulator = started.enter_context(run_simulator(root / "sim", chargers=3, seed=3))
        assert simulator_names(simulator) == [DOWN, FAULTED, HEALTHY]
        config = write_config_for(simulator, root / "exporter.yml", timeout=2.0, labels={"site": SITE})
        exporter = started.enter_context(run_exporter(config, root / "exporter"))
        webhook = started.enter_context(Webhook().running())
        monitoring = started.enter_context(
            run_monitoring(
                root,
                {
                    # docs/deployment.md, "Prometheus configuration", the /probe setup.
                    "scrape_configs": [
                        {
                            "job_name": PROBE_JOB,
                            "metrics_path": "/probe",
                            "static_configs": [{"targets": [DOWN, FAULTED, HEALTHY]}],
                            "relabel_configs": [
                                {"source_labels": ["__address__"], "target_label": "__param_target"},
                                {"source_labels": ["__param_target"], "target_label": "instance"},
                                {"target_label": "__address__", "replacement": f"127.0.0.1:{exporter.port}"},
                            ],
                        },
                        {
                            "job_name": EXPORTER_JOB,
                            "metrics_path": "/-/metrics",
                            "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}],
                        },
                    ],
                },
                rule_files=shipped_fast_rules(root / "rules", FOR_OVERRIDES),
                alertmanager={
                    "route": {
                        "receiver": "webhook",
                        "group_by": ["alertname", "charger"],
                        "group_wait": "1s",
                        "group_interval": "1s",
                        "repeat_interval": "1h",
                    },
                    "receivers": [
                        {"name": "webhook", "webhook_configs": [{"url": webhook.url, "send_resolved": True}]}
                    ],
                },
                # Let Prometheus see every charger healthy first, then break two of them.
                chargers_up=3,
            )
        )
        assert monitoring.alertmanager is not None
        result = Stack(simulator, exporter, monitoring.prometheus, monitoring.alertmanager, webhook)
        set_fault(simulator, DOWN, "http_500")
        set_fault(simulator, FAULTED, "vehicle_error")
        yield result


def check_notification(alert: dict[str, Any], charger: str, severity: str) -> None:
    assert alert["labels"]["charger"] == charger
    assert alert["labels"]["site"] == SITE
    assert alert["labels"]["severity"] == severity
    assert alert["labels"]["job"] == PROBE_JOB
    assert alert["labels"]["instance"] == charger
    assert charger in alert["annotations"]["summary"]
    assert charger in alert["annotations"]["description"]
    # CONFIG's default runbook base: the runbooks page shipped with the exporter, one heading per alert.
    runbooks = page_with("Alert runbooks").relative_to(ROOT)
    assert alert["annotations"]["runbook_url"] == f"{runbooks}#" + alert["labels"]["alertname"].lower()


def test_unreachable_charger_alerts_through_alertmanager(stack: Stack) -> None:
    firing = stack.wait("PulsatrixChargerDown firing in Prometheus", lambda: stack.firing("PulsatrixChargerDown", DOWN))
    assert firing["labels"]["site"] == SITE
    notified = stack.wait("PulsatrixChargerDown at the webhook", lambda: stack.notified("PulsatrixChargerDown", DOWN))
    check_notification(notified, DOWN, "critical")
    # All four endpoints answer HTTP 500: no data at all.
    assert notified["annotations"]["description"].startswith(f"No API endpoint of charger {DOWN} has given ")
    dashboard = f"/d/pulsatrix-charger?var-job={PROBE_JOB}&var-charger={DOWN}"
    assert notified["annotations"]["dashboard_url"].endswith(dashboard)


def test_faulted_charger_alerts_through_alertmanager(stack: Stack) -> None:
    stack.wait("PulsatrixChargerFault firing in Prometheus", lambda: stack.firing("PulsatrixChargerFault", FAULTED))
    notified = stack.wait(
        "PulsatrixChargerFault at the webhook", lambda: stack.notified("PulsatrixChargerFault", FAULTED)
    )
    check_notification(notified, FAULTED, "critical")
    # The prose-doc firmware reports the single letter for the vehicle and two characters for the controller.
    assert notified["annotations"]["description"] == (
        f"Charger {FAULTED} has reported a fault for 5 minutes in 3 of its status fields: "
        "state Faulted, vehicle status F, controller status F1."
    )


def test_healthy_charger_and_exporter_do_not_alert(stack: Stack) -> None:
    # Wait until the broken chargers' alerts are through, so that the healthy one had the same time to misfire.
    stack.wait("PulsatrixChargerDown at the webhook", lambda: stack.notified("PulsatrixChargerDown", DOWN))
    stack.wait("PulsatrixChargerFault at the webhook", lambda: stack.notified("PulsatrixChargerFault", FAULTED))
    stack.prometheus.wait_for_evaluation_after(time.time() + 2)  # a few more evaluations
    # The exporter job is really scraped (else the ExporterDown check below would prove nothing), and so are all
    # three probes, the unreachable charger's included: its exporter answers the probe with pulsatrix_up 0.
    exporter_up = stack.prometheus.query(f'up{{job="{EXPORTER_JOB}"}} == 1')
    assert [s["metric"]["instance"] for s in exporter_up] == [stack.exporter_target()], exporter_up
    probes_up = stack.prometheus.query(f'up{{job="{PROBE_JOB}"}} == 1')
    assert sorted(s["metric"]["instance"] for s in probes_up) == sorted([DOWN, FAULTED, HEALTHY]), probes_up
    history = stack.alert_history()
    seen = {(name, charger) for name, charger, _, _ in history}
    assert {("PulsatrixChargerDown", DOWN), ("PulsatrixChargerFault", FAULTED)} <= seen, seen
    assert not {pair for pair in seen if pair[1] == HEALTHY}, f"healthy {HEALTHY} alerted: {seen}\n{stack.context()}"
    assert not {name for name, _ in seen if name in ("PulsatrixExporterDown", "PulsatrixProbeFailing")}, seen
    # absent() may be pending for a moment before the first scrape after start-up, but never fires.
    assert not [h for h in history if h[0] == "PulsatrixExporterAbsent" and h[3] == "firing"], history
    # Each broken charger raises its own alert, not the other's.
    assert ("PulsatrixChargerFault", DOWN) not in seen, seen
    assert ("PulsatrixChargerDown", FAULTED) not in seen, seen
    assert not [a for a in stack.webhook.alerts() if a["labels"].get("charger") == HEALTHY], stack.webhook.alerts()


def test_charger_down_resolves_when_it_answers_again(stack: Stack) -> None:
    stack.wait("PulsatrixChargerDown at the webhook", lambda: stack.notified("PulsatrixChargerDown", DOWN))
    set_fault(stack.simulator, DOWN, "none")
    resolved = stack.wait(
        "resolved PulsatrixChargerDown at the webhook",
        lambda: stack.notified("PulsatrixChargerDown", DOWN, status="resolved"),
    )
    check_notification(resolved, DOWN, "critical")
    assert stack.firing("PulsatrixChargerDown", DOWN) is None


def test_stopped_exporter_alerts_once_not_per_charger(stack: Stack) -> None:
    """Runs last: it stops the exporter (the fixture's stop afterwards is then a no-op)."""
    stack.wait("PulsatrixChargerDown resolved", lambda: stack.firing("PulsatrixChargerDown", DOWN) is None)
    stack.exporter.stop()
    # Every probe fails now, and so does the exporter's own target.
    stack.wait(
        "all probes and the exporter target down",
        lambda: len(stack.prometheus.query('up{job=~"pulsatrix|pulsatrix-exporter"} == 0')) == 4,
        timeout=20,
    )
    down_since = time.time()

    def exporter_down() -> dict[str, Any] | None:
        return next(
            (
                a
                for a in stack.prometheus.alerts()
                if a["labels"].get("alertname") == "PulsatrixExporterDown" and a["state"] == "firing"
            ),
            None,
        )

    firing = stack.wait("PulsatrixExporterDown firing in Prometheus", exporter_down, timeout=20)
    assert firing["labels"]["job"] == EXPORTER_JOB and firing["labels"]["instance"] == stack.exporter_target()
    notified = stack.wait(
        "PulsatrixExporterDown at the webhook", lambda: stack.notified("PulsatrixExporterDown", None), timeout=20
    )
    assert notified["labels"]["job"] == EXPORTER_JOB
    assert notified["labels"]["instance"] == stack.exporter_target()
    assert notified["labels"]["severity"] == "critical"
    assert "charger" not in notified["labels"]
    assert stack.exporter_target() in notified["annotations"]["summary"]
    assert notified["annotations"]["runbook_url"].endswith("#pulsatrixexporterdown")
    # Until the probes' failures have outlasted ProbeFailing's `for:` in an evaluation, and a group_wait (1 s) has
    # passed for its notification: it would have fired and been notified by then.
    probe_failing = fast_for("PulsatrixProbeFailing")
    stack.prometheus.wait_for_evaluation_after(down_since + probe_failing + 1, alerts=["PulsatrixProbeFailing"])
    history = stack.alert_history()
    exporter_alerts = {h for h in history if h[0] == "PulsatrixExporterDown"}
    assert {(h[2], h[3]) for h in exporter_alerts} <= {(EXPORTER_JOB, "pending"), (EXPORTER_JOB, "firing")}, history
    assert not [h for h in history if h[0] == "PulsatrixProbeFailing" and h[3] == "firing"], history
    assert not [a for a in stack.webhook.alerts() if a["labels"]["alertname"] == "PulsatrixProbeFailing"]
    down = [a for a in stack.prometheus.alerts() if a["labels"].get("alertname") == "PulsatrixExporterDown"]
    assert len(down) == 1, down
    # Blind is not healthy: every charger is reported unmonitored (with its site), and the faulted charger's alert
    # stays firing instead of resolving because its series went stale.
    for charger in (DOWN, FAULTED, HEALTHY):
        unmonitored = stack.wait(
            f"PulsatrixChargerUnmonitored for {charger}",
            lambda c=charger: stack.firing("PulsatrixChargerUnmonitored", c),  # type: ignore[misc]
            timeout=20,
        )
        assert unmonitored["labels"]["site"] == SITE
    assert stack.firing("PulsatrixChargerFault", FAULTED) is not None, stack.context()
    stack.prometheus.wait_for_evaluation_after(time.time() + 2)  # a few more evaluations
    assert stack.firing("PulsatrixChargerFault", FAULTED) is not None, stack.context()
    assert stack.notified("PulsatrixChargerFault", FAULTED, status="resolved") is None, stack.webhook.alerts()
