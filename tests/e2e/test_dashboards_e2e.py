"""Every dashboard query against a real Prometheus scraping a real exporter in front of simulated chargers.

Grafana is not available here, so the test does what Grafana would do with each panel: expand the template
variables (All → the variable's allValue, a multi-selection → ``(a|b)``, ``$__rate_interval`` etc.) and run the query
through Prometheus' HTTP API. Every panel query must return data on a fleet with one charger down, API limits set on
one charger and one charger without the ``site`` label.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.servers import (
    Prometheus,
    Server,
    put_json,
    run_exporter,
    run_prometheus,
    run_simulator,
    set_fault,
    simulator_names,
    write_config_for,
)

pytestmark = pytest.mark.e2e

DASHBOARD_DIR = Path(__file__).resolve().parents[2] / "grafana" / "dashboards"
VARIABLE_RE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$([A-Za-z_]\w*)|\[\[(\w+)\]\]")
LABEL_VALUES_RE = re.compile(r"^label_values\((.+),\s*(\w+)\)$")
BUILTINS = {"__rate_interval": "10s", "__interval": "2s", "__range": "5m"}
SITE = "depot-north"
DOWN = "bay-0003"  # its `limits` endpoint answers 500: the charger is down; it also has no `site` label
LIMITED = "garage"  # gets an API current and power limit
Json = dict[str, Any]


def dashboards() -> dict[str, Json]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def panels(dashboard: Json) -> Iterator[Json]:
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            yield panel
        yield from panel.get("panels", [])


def expander(dashboard: Json, selection: dict[str, list[str] | None]) -> Callable[[str], str]:
    """Expand variables the way Grafana does for Prometheus: None selects All (the allValue), a list the values."""
    all_values = {v["name"]: v.get("allValue") for v in dashboard["templating"]["list"]}

    def value(name: str) -> str:
        if name in BUILTINS:
            return BUILTINS[name]
        chosen = selection[name]
        if chosen is None:
            all_value = all_values[name]
            assert all_value, f"variable {name} has no allValue"
            return str(all_value)
        # Grafana escapes regex metacharacters with a double backslash (one for the PromQL string, one for the regex).
        escaped = [re.sub(r"([\\$^*+?.()|{}\[\]'])", r"\\\\\1", v) for v in chosen]
        return escaped[0] if len(escaped) == 1 else f"({'|'.join(escaped)})"

    def expand(text: str) -> str:
        return VARIABLE_RE.sub(lambda m: value(next(g for g in m.groups() if g)), text)

    return expand


def run_target(prom: Prometheus, target: Json, expr: str, at: float) -> list[Json]:
    if target.get("instant"):
        return prom.query(expr, at=at)
    return prom.query_range(expr, start=at - 20, end=at, step=2)


def put_limits(simulator: Server, charger: str, body: Json) -> None:
    assert put_json(f"{simulator.url}/{charger}/api/v1/limits", body) == 204


def label_values(prom: Prometheus, definition: str) -> list[str]:
    match = LABEL_VALUES_RE.match(definition)
    assert match, f"not a label_values() query: {definition}"
    selector, label = match.groups()
    answer = prom.get(f"/api/v1/label/{urllib.parse.quote(label)}/values", **{"match[]": selector})
    assert answer["status"] == "success", answer
    values: list[str] = answer["data"]
    return values


def test_every_dashboard_query_returns_data(tmp_path: Path) -> None:
    with run_simulator(tmp_path / "sim", chargers=4, speed=20, seed=3) as simulator:
        names = simulator_names(simulator)
        assert DOWN in names and LIMITED in names
        config_path = write_config_for(simulator, tmp_path / "exporter.yml", timeout=0.8, labels={"site": SITE})
        config = yaml.safe_load(config_path.read_text())
        for charger in config["chargers"]:
            if charger["name"] == DOWN:
                del charger["labels"]
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        set_fault(simulator, DOWN, "http_500", ["limits"])
        put_limits(simulator, LIMITED, {"amperageLimit": 12.0, "powerLimit": 8000.0, "timeout": 600_000})

        with (
            run_exporter(config_path, tmp_path / "exporter") as exporter,
            run_prometheus(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "scrape_configs": [
                        {
                            "job_name": "pulsatrix",
                            "scrape_interval": "1s",
                            "scrape_timeout": "1s",
                            "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}],
                        }
                    ],
                },
                tmp_path / "prometheus",
            ) as prom,
        ):
            # Data flows, with enough samples for rate()/increase(), an ended session and the fault counted.
            prom.wait_for(f"count(pulsatrix_up) == {len(names)}", timeout=30)
            prom.wait_for(f'count_over_time(pulsatrix_up{{charger="{LIMITED}"}}[1m]) >= 8', timeout=30)
            prom.wait_for("pulsatrix_api_current_limit_amperes", timeout=30)
            prom.wait_for('increase(pulsatrix_scrape_errors_total{reason="http_status"}[10s]) > 0', timeout=30)
            prom.wait_for("pulsatrix_session_end_timestamp_seconds", timeout=60)
            at = time.time()

            failures: list[str] = []
            everything: dict[str, list[str] | None] = {"job": ["pulsatrix"], "site": None, "charger": None}
            for dashboard in dashboards().values():
                expand = expander(dashboard, everything)
                for panel in panels(dashboard):
                    for target in panel["targets"]:
                        expr = expand(target["expr"])
                        if not run_target(prom, target, expr, at):
                            failures.append(f"{dashboard['title']} / {panel['title']} / {target['refId']}: {expr}")
            assert not failures, "queries without data:\n" + "\n".join(failures)

            # The template variables resolve to the chargers, the site and the job.
            for dashboard in dashboards().values():
                expand = expander(dashboard, everything)
                resolved = {
                    v["name"]: set(label_values(prom, expand(v["definition"])))
                    for v in dashboard["templating"]["list"]
                    if v["type"] == "query"
                }
                assert resolved == {"job": {"pulsatrix"}, "site": {SITE}, "charger": set(names)}, dashboard["title"]

            fleet = dashboards()["pulsatrix-fleet.json"]
            stat = {p["title"]: p for p in panels(fleet) if p["type"] == "stat"}
            expand = expander(fleet, everything)

            def stat_value(title: str) -> float:
                [series] = prom.query(expand(stat[title]["targets"][0]["expr"]), at=at)
                return float(series["value"][1])

            # Site = All counts the charger without a site label too: it is the one down.
            assert stat_value("Down") == 1
            # Every charger that reports a state is counted in exactly one of the state tiles.
            by_state = sum(stat_value(t) for t in ("Charging", "Suspended", "Idle", "Other state"))
            assert by_state == len(names)

            # Selecting chargers narrows every per-charger panel of the detail dashboard to them.
            detail = dashboards()["pulsatrix-charger.json"]
            chosen = [LIMITED, DOWN]
            expand = expander(detail, {"job": ["pulsatrix"], "site": None, "charger": chosen})
            seen: set[str] = set()
            for panel in panels(detail):
                for target in panel["targets"]:
                    for series in run_target(prom, target, expand(target["expr"]), at):
                        charger = series["metric"].get("charger")
                        assert charger in chosen, f"{panel['title']}: series of {charger}: {target['expr']}"
                        seen.add(charger)
            assert seen == set(chosen)
