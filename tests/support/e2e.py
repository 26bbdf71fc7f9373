"""What the end-to-end tests (tests/e2e/) share on top of the processes of servers.py: Prometheus (and
Alertmanager) started with the test timing, a webhook receiver for Alertmanager, and the dashboards read the way
Grafana reads them (their JSON, their template variables expanded, ``label_values()`` resolved)."""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import Prometheus, Server, run_alertmanager, run_prometheus

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = ROOT / "grafana" / "dashboards"
# Scrape and evaluate every second: with the shipped rules sped up 60 × (fast_rules.py), one second here is one
# minute in production, so an alert with `for: 5m` fires after about 5 s.
FAST_TIMING = {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
VARIABLE_RE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$([A-Za-z_]\w*)|\[\[(\w+)\]\]")
LABEL_VALUES_RE = re.compile(r"^label_values\((.+),\s*(\w+)\)$")
BUILTINS = {"__rate_interval": "10s", "__interval": "2s", "__range": "5m"}
Json = dict[str, Any]


@dataclass
class Monitoring:
    prometheus: Prometheus
    alertmanager: Server | None


@contextlib.contextmanager
def run_monitoring(
    workdir: Path,
    config: Json,
    rule_files: Sequence[Path] = (),
    alertmanager: Json | None = None,
    chargers_up: int | None = None,
    timeout: float = 60.0,
) -> Iterator[Monitoring]:
    """Prometheus with ``config`` (at least its ``scrape_configs``; the global timing becomes FAST_TIMING) and
    ``rule_files``, in ``workdir/prometheus``; given an ``alertmanager`` config, an Alertmanager in
    ``workdir/alertmanager`` that Prometheus sends its alerts to. With ``chargers_up``, wait until Prometheus has
    that many ``pulsatrix_up`` series at 1 (fail with its targets' last errors after ``timeout``). Both stop
    afterwards."""
    with contextlib.ExitStack() as started:
        prometheus_config = {**config, "global": {**config.get("global", {}), **FAST_TIMING}}
        manager = None
        if alertmanager is not None:
            manager = started.enter_context(run_alertmanager(alertmanager, workdir / "alertmanager"))
            targets = [f"127.0.0.1:{manager.port}"]
            prometheus_config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": targets}]}]}
        prometheus = started.enter_context(
            run_prometheus(prometheus_config, workdir / "prometheus", rule_files=rule_files)
        )
        if chargers_up is not None:
            wait_for_chargers_up(prometheus, chargers_up, timeout)
        yield Monitoring(prometheus, manager)


def wait_for_chargers_up(prometheus: Prometheus, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while len(up := prometheus.query("pulsatrix_up == 1")) != count:
        if time.monotonic() > deadline:
            errors = {t["scrapeUrl"]: t["lastError"] for t in prometheus.targets()}
            pytest.fail(f"{len(up)} of {count} chargers up after {timeout:.0f}s: {up}\ntargets: {errors}")
        time.sleep(0.5)


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


def dashboards() -> dict[str, Json]:
    """The generated dashboards (grafana/dashboards/*.json) by file name."""
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def expander(
    dashboard: Json, selection: dict[str, list[str] | None], builtins: dict[str, str] | None = None
) -> Callable[[str], str]:
    """Expand variables the way Grafana does for Prometheus: None selects All (the allValue), a list the values;
    a textbox variable has its default; ``builtins`` overrides ``$__range`` etc. (a panel's own time range)."""
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    fixed = {**BUILTINS, **(builtins or {})}

    def value(name: str) -> str:
        if name in fixed:
            return fixed[name]
        if variables[name]["type"] == "textbox":
            return str(variables[name]["query"])
        chosen = selection[name]
        if chosen is None:
            all_value = variables[name].get("allValue")
            assert all_value, f"variable {name} has no allValue"
            return str(all_value)
        # Grafana escapes regex metacharacters with a double backslash (one for the PromQL string, one for the regex).
        escaped = [re.sub(r"([\\$^*+?.()|{}\[\]'])", r"\\\\\1", v) for v in chosen]
        return escaped[0] if len(escaped) == 1 else f"({'|'.join(escaped)})"

    def expand(text: str) -> str:
        return VARIABLE_RE.sub(lambda m: value(next(g for g in m.groups() if g)), text)

    return expand


def label_values(prom: Prometheus, definition: str) -> list[str]:
    """What Grafana's ``label_values(selector, label)`` variable query lists, asked of ``prom``."""
    match = LABEL_VALUES_RE.match(definition)
    assert match, f"not a label_values() query: {definition}"
    selector, label = match.groups()
    answer = prom.get(f"/api/v1/label/{urllib.parse.quote(label)}/values", **{"match[]": selector})
    assert answer["status"] == "success", answer
    values: list[str] = answer["data"]
    return values
