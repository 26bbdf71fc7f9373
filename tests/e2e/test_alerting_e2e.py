"""End to end: simulated chargers → exporter → Prometheus with the shipped alert rules → Alertmanager → a webhook.

One simulated charger is made unreachable (HTTP 500), another reports a fault (IEC 61851 status F); the alerts
must fire in Prometheus and reach the webhook with the failed charger's labels and annotations, the healthy
charger must never alert, and the charger-down alert must resolve once the charger answers again. The rules are the
shipped ones with every ``for:`` shortened, so that the test takes seconds instead of minutes.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.support.servers import (
    Prometheus,
    Server,
    run_alertmanager,
    run_exporter,
    run_prometheus,
    run_simulator,
    set_fault,
    simulator_names,
    write_config_for,
)

pytestmark = pytest.mark.e2e

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"
SHORT_FOR = "2s"
TIMEOUT = 60.0
SITE = "e2e-site"
# Chargers from `simulate --chargers 3`: garage (OpenAPI firmware), carport (prose-doc firmware: single-letter
# vehicle status), visitor-bay (single-phase). The first two are broken by the fixture, the third stays healthy.
DOWN, FAULTED, HEALTHY = "garage", "carport", "visitor-bay"

T = TypeVar("T")


class Webhook:
    """A tiny Alertmanager webhook receiver on loopback that keeps every notification it gets."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                with receiver._lock:
                    receiver.notifications.append(body)
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/alerts"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert of every notification so far, each with the notification's status."""
        with self._lock:
            return [alert for note in self.notifications for alert in note.get("alerts", [])]

    @contextlib.contextmanager
    def running(self) -> Iterator[Webhook]:
        self._thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)


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

    def notified(self, alertname: str, charger: str, status: str = "firing") -> dict[str, Any] | None:
        for alert in self.webhook.alerts():
            labels = alert["labels"]
            if labels.get("alertname") == alertname and labels.get("charger") == charger and alert["status"] == status:
                return alert
        return None


def shortened_rules(target: Path) -> Path:
    """A copy of the shipped rules with every ``for:`` cut to a few seconds (the shipped file is not touched)."""
    document = yaml.safe_load(RULES.read_text())
    for group in document["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = SHORT_FOR
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    return target


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("alerting")
    with contextlib.ExitStack() as started:
        simulator = started.enter_context(run_simulator(root / "sim", chargers=3, seed=3))
        assert simulator_names(simulator) == [DOWN, FAULTED, HEALTHY]
        config = write_config_for(simulator, root / "exporter.yml", timeout=2.0, labels={"site": SITE})
        exporter = started.enter_context(run_exporter(config, root / "exporter"))
        webhook = started.enter_context(Webhook().running())
        alertmanager = started.enter_context(
            run_alertmanager(
                {
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
                root / "alertmanager",
            )
        )
        prometheus = started.enter_context(
            run_prometheus(
                {
                    "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                    "alerting": {
                        "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager.port}"]}]}]
                    },
                    "scrape_configs": [
                        {"job_name": "pulsatrix", "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}]}
                    ],
                },
                root / "prometheus",
                rule_files=[shortened_rules(root / "rules" / "alerts.yml")],
            )
        )
        result = Stack(simulator, exporter, prometheus, alertmanager, webhook)
        # Let Prometheus see every charger healthy first, then break two of them.
        result.wait("all three chargers up", lambda: len(prometheus.query("pulsatrix_up == 1")) == 3)
        set_fault(simulator, DOWN, "http_500")
        set_fault(simulator, FAULTED, "vehicle_error")
        yield result


def check_notification(alert: dict[str, Any], charger: str, severity: str) -> None:
    assert alert["labels"]["charger"] == charger
    assert alert["labels"]["site"] == SITE
    assert alert["labels"]["severity"] == severity
    assert alert["labels"]["job"] == "pulsatrix"
    assert charger in alert["annotations"]["summary"]
    assert charger in alert["annotations"]["description"]
    assert alert["annotations"]["runbook_url"].startswith("https://github.com/pulsatrix-exporter/")


def test_unreachable_charger_alerts_through_alertmanager(stack: Stack) -> None:
    firing = stack.wait("PulsatrixChargerDown firing in Prometheus", lambda: stack.firing("PulsatrixChargerDown", DOWN))
    assert firing["labels"]["site"] == SITE
    notified = stack.wait("PulsatrixChargerDown at the webhook", lambda: stack.notified("PulsatrixChargerDown", DOWN))
    check_notification(notified, DOWN, "critical")
    # All four endpoints answer HTTP 500.
    assert notified["annotations"]["description"].startswith(f"4 of the 4 API endpoints of charger {DOWN} ")


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
    time.sleep(3)  # a few more evaluations
    history = stack.prometheus.query("count by (alertname, charger, alertstate) (count_over_time(ALERTS[10m]))")
    seen = {(s["metric"].get("alertname"), s["metric"].get("charger")) for s in history}
    assert {("PulsatrixChargerDown", DOWN), ("PulsatrixChargerFault", FAULTED)} <= seen, seen
    assert not {pair for pair in seen if pair[1] == HEALTHY}, f"healthy {HEALTHY} alerted: {seen}\n{stack.context()}"
    assert ("PulsatrixExporterDown", None) not in seen, seen
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
