"""Every dashboard query against a real Prometheus scraping a real exporter in front of simulated chargers.

Grafana is not available here, so the test does what Grafana would do with each panel: expand the template
variables (All → the variable's allValue, a multi-selection → ``(a|b)``, ``$__rate_interval`` etc.), align range
queries to their step like Grafana does (dashboard time zone UTC) and run the query through Prometheus' HTTP API.
Every panel query must return data on a fleet with one charger answering on only three of its endpoints, API limits
set on one charger and one charger without the ``site`` label, in both setups at once (two Prometheus servers
scraping the same exporter, each with the shipped recording rules of alerts.yml and sites.yml, sped up):

- the shipped one: ``deploy/prometheus/prometheus.yml`` read as is, only the exporter's address substituted — a
  ``pulsatrix`` job probing each charger discovered from ``/sd`` and a ``pulsatrix-exporter`` job on ``/-/metrics``;
- the single-job one: job ``pulsatrix-exporter`` scraping the exporter's ``/metrics``.

The shipped setup also remote-writes into VictoriaMetrics (the README's long-term store), and every panel query must
return data read from there as well.

Last the exporter stops: the fleet view must count every charger as unmonitored, none as healthy.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter import __version__
from tests.support.e2e import dashboards, expander, label_values, run_monitoring
from tests.support.fast_rules import shipped_fast_rules
from tests.support.ledger import run_victoriametrics
from tests.support.servers import (
    Prometheus,
    Server,
    put_json,
    run_exporter,
    run_simulator,
    set_fault,
    simulator_names,
    write_config_for,
)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
SHIPPED_EXPORTER = "pulsatrix-exporter:9821"  # the exporter's address in the shipped config
PROBE_JOB, EXPORTER_JOB = "pulsatrix", "pulsatrix-exporter"  # docs/deployment.md, "Prometheus configuration"
DAY = 86400
LEGEND_RE = re.compile(r"\{\{(\w+)\}\}")
DURATION_RE = re.compile(r"^(\d+)([smhd])$")
SITE = "depot-north"
DOWN = "bay-0003"  # its `limits` endpoint answers 500: partial data; it also has no `site` label
LIMITED = "garage"  # gets an API current and power limit
FLEET_TILES = ("Charging", "Suspended", "Idle", "Other state", "Faulted", "Partial data", "Down", "Unmonitored")
Json = dict[str, Any]


def panels(dashboard: Json) -> Iterator[Json]:
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            yield panel
        yield from panel.get("panels", [])


def panel_builtins(panel: Json, at: float) -> dict[str, str]:
    """``$__range`` of a panel with its own relative time: ``now/d`` (today so far), ``now/M`` (this month so far)
    or a duration; the dashboard's (BUILTINS in tests/support/e2e.py) otherwise. Time zone UTC, as in
    query_range_like_grafana."""
    time_from = panel.get("timeFrom")
    if not time_from:
        return {}
    now = datetime.fromtimestamp(at, UTC)
    if time_from == "now/d":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    elif time_from == "now/M":
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    else:
        return {"__range": time_from}
    return {"__range": f"{max(1, int(at - start.timestamp()))}s"}


def seconds(duration: str) -> int:
    match = DURATION_RE.match(duration)
    assert match, f"not a simple duration: {duration}"
    return int(match[1]) * {"s": 1, "m": 60, "h": 3600, "d": DAY}[match[2]]


def query_range_like_grafana(prom: Prometheus, panel: Json, target: Json, expr: str, at: float) -> list[Json]:
    """Grafana's range query for the panel at ``at``: the step is the target's (or panel's) min interval when that
    is larger than the automatic one (2 s here); the range is the panel's relative time (``timeFrom``) or 20 s; start
    and end are aligned down to a multiple of the step (in the dashboard's time zone, UTC here)."""
    step = max(2, seconds(target.get("interval") or panel.get("interval") or "0s"))
    span = seconds(panel["timeFrom"]) if panel.get("timeFrom") else 20
    start, end = math.floor((at - span) / step) * step, math.floor(at / step) * step
    return prom.query_range(expr, start=start, end=end, step=step)


def run_target(prom: Prometheus, panel: Json, target: Json, expr: str, at: float) -> list[Json]:
    if target.get("instant"):
        return prom.query(expr, at=at)
    return query_range_like_grafana(prom, panel, target, expr, at)


def fill_legend(legend: str, labels: dict[str, str]) -> str:
    """A legend format with its ``{{label}}`` references filled in, as Grafana names the series."""
    return LEGEND_RE.sub(lambda match: labels.get(match[1], ""), legend)


def put_limits(simulator: Server, charger: str, body: Json) -> None:
    assert put_json(f"{simulator.url}/{charger}/api/v1/limits", body) == 204


def shipped_prometheus_config(exporter: Server) -> Json:
    """The scrape jobs of ``deploy/prometheus/prometheus.yml`` as shipped, with the exporter's address substituted
    and every interval 1 s. The other jobs (Prometheus, Alertmanager), the rules and alerting are left out."""
    text = SHIPPED_PROMETHEUS.read_text(encoding="utf-8")
    assert SHIPPED_EXPORTER in text, f"{SHIPPED_PROMETHEUS}: the exporter is no longer {SHIPPED_EXPORTER}"
    address = f"127.0.0.1:{exporter.port}"
    jobs = {job["job_name"]: job for job in yaml.safe_load(text.replace(SHIPPED_EXPORTER, address))["scrape_configs"]}
    assert {PROBE_JOB, EXPORTER_JOB} <= set(jobs), f"{SHIPPED_PROMETHEUS}: jobs {sorted(jobs)}"
    probe, own = jobs[PROBE_JOB], jobs[EXPORTER_JOB]
    # The structure the dashboards are proven against: chargers from /sd probed through /probe, the exporter's own
    # metrics from /-/metrics; nothing left pointing at the compose host name.
    assert probe["metrics_path"] == "/probe", probe
    assert [sd["url"] for sd in probe["http_sd_configs"]] == [f"http://{address}/sd"], probe
    assert own.get("metrics_path") == "/-/metrics", own
    assert "pulsatrix-exporter:" not in yaml.safe_dump([probe, own]), (probe, own)
    for job in (probe, own):
        job.update(scrape_interval="1s", scrape_timeout="1s")
        for sd in job.get("http_sd_configs", []):
            sd["refresh_interval"] = "5s"
    return {"scrape_configs": [probe, own]}


def single_job_prometheus_config(exporter: Server) -> Json:
    """All chargers in one scrape of /metrics, in job pulsatrix-exporter (docs/deployment.md, "Prometheus
    configuration")."""
    return {
        "scrape_configs": [
            {
                "job_name": EXPORTER_JOB,
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}],
            }
        ],
    }


def wait_for_data(prom: Prometheus, names: list[str]) -> None:
    """Data flows, with enough samples for rate()/increase(), an ended session and the fault counted."""
    prom.wait_for(f"count(pulsatrix_up) == {len(names)}", timeout=30)
    prom.wait_for(f'count_over_time(pulsatrix_up{{charger="{LIMITED}"}}[1m]) >= 8', timeout=30)
    prom.wait_for(f'count_over_time(up{{job="{EXPORTER_JOB}"}}[1m]) >= 8', timeout=30)
    prom.wait_for("pulsatrix_api_current_limit_amperes", timeout=30)
    prom.wait_for('increase(pulsatrix_scrape_errors_total{reason="http_status"}[10s]) > 0', timeout=30)
    prom.wait_for("pulsatrix_session_end_timestamp_seconds", timeout=60)
    # The recording rules (the hourly group runs every 2 s here).
    for record in (
        "pulsatrix:charger_energy_joules:increase1h",
        "pulsatrix:charger_session_starts:changes1h",
        "pulsatrix:charger_charging_ratio:avg1h",
        "pulsatrix:charger_down_since_timestamp_seconds",
        "pulsatrix:charger_state_since_timestamp_seconds",
        'pulsatrix:site_capacity_watts{site="depot-north"}',
    ):
        prom.wait_for(record, timeout=30)


def check_dashboards(prom: Prometheus, names: list[str], device_job: str) -> None:
    at = time.time()
    everything: dict[str, list[str] | None] = {
        "job": [device_job],
        "site": None,
        "charger": None,
        "exporter_job": [EXPORTER_JOB],
    }

    # The fleet view with every charger; the detail dashboard (one charger at a time) for some charger.
    failures: list[str] = []
    for dashboard in dashboards().values():
        single = not next(v for v in dashboard["templating"]["list"] if v["name"] == "charger")["multi"]
        for panel in panels(dashboard):
            for target in panel["targets"]:
                exprs = [
                    expander(dashboard, everything | {"charger": chosen}, panel_builtins(panel, at))(target["expr"])
                    for chosen in ([[name] for name in names] if single else [None])
                ]
                if not any(run_target(prom, panel, target, expr, at) for expr in exprs):
                    failures.append(f"{dashboard['title']} / {panel['title']} / {target['refId']}: {exprs[0]}")
    assert not failures, "queries without data:\n" + "\n".join(failures)

    # The template variables resolve to the chargers, the site and the job of the device series, and to the job of
    # the exporter processes (whatever it is called: found by their build info).
    for dashboard in dashboards().values():
        expand = expander(dashboard, everything)
        resolved = {
            v["name"]: set(label_values(prom, expand(v["definition"])))
            for v in dashboard["templating"]["list"]
            if v["type"] == "query"
        }
        expected = {"job": {device_job}, "site": {SITE}, "charger": set(names), "exporter_job": {EXPORTER_JOB}}
        assert resolved == expected, dashboard["title"]

    fleet = dashboards()["pulsatrix-fleet.json"]
    fleet_panels = {p["title"]: p for p in panels(fleet)}
    expand = expander(fleet, everything)

    def stat_values(title: str) -> dict[str, float]:
        """legend → value of every series of a stat panel (legend ``{{label}}`` filled in)."""
        values = {}
        for target in fleet_panels[title]["targets"]:
            for series in prom.query(expand(target["expr"]), at=at):
                legend = fill_legend(target["legendFormat"], series["metric"])
                values[legend] = float(series["value"][1])
        return values

    def stat_value(title: str) -> float:
        [value] = stat_values(title).values()
        return value

    # Site = All counts the charger without a site label too: it answers on three endpoints of four (partial data,
    # not down). Every charger is counted in exactly one tile.
    assert stat_value("Partial data") == 1
    assert stat_value("Down") == 0 and stat_value("Unmonitored") == 0 and stat_value("Faulted") == 0
    assert sum(stat_value(t) for t in FLEET_TILES) == len(names)
    # Exporter processes, not chargers (with the probe job, its `up` would count the chargers), and its version.
    assert stat_values("Exporter processes up") == {"up": 1, "down": 0}
    assert stat_values("Exporter version") == {__version__: 1}

    # Energy per day: with Grafana's 1-day step the last point is today's midnight; it must be there and hold the
    # energy since midnight (the meter's rise over the same samples, plus increase()'s extrapolation of at most
    # half a scrape interval at each end).
    [daily_panel] = [p for p in panels(fleet) if p["title"] == "Energy per charger per day"]
    [daily_target] = daily_panel["targets"]
    bars = query_range_like_grafana(prom, daily_panel, daily_target, expand(daily_target["expr"]), at)
    midnight = math.floor(at / DAY) * DAY
    today = {s["metric"]["charger"]: float(s["values"][-1][1]) for s in bars if s["values"][-1][0] == midnight}
    assert set(today) == set(names), f"no bar for today: {bars}"
    meter = f'pulsatrix_energy_imported_joules_total{{job="{device_job}"}}[1d] offset -1d'
    risen = {
        s["metric"]["charger"]: float(s["value"][1])
        for s in prom.query(f"sum by (charger) (max_over_time({meter}) - min_over_time({meter})) / 3.6e6", at=midnight)
    }
    assert sum(risen.values()) > 0, "no charger charged: the check below would prove nothing"
    for charger, kwh in today.items():
        assert risen[charger] * 0.999 <= kwh <= risen[charger] * 1.25 + 1e-9, (charger, kwh, risen[charger])

    # The Chargers table: the charger with partial data first (status 1), the others ok (0).
    [table] = [p for p in panels(fleet) if p["title"] == "Chargers"]
    status = {s["metric"]["charger"]: float(s["value"][1]) for s in prom.query(expand(table["targets"][0]["expr"]))}
    assert status == {name: (1.0 if name == DOWN else 0.0) for name in names}, status

    # The detail dashboard shows one charger: every per-charger panel is narrowed to it.
    detail = dashboards()["pulsatrix-charger.json"]
    for chosen in (LIMITED, DOWN):
        expand = expander(detail, everything | {"charger": [chosen]})
        seen: set[str] = set()
        for panel in panels(detail):
            for target in panel["targets"]:
                for series in run_target(prom, panel, target, expand(target["expr"]), at):
                    charger = series["metric"].get("charger")
                    assert charger == chosen, f"{panel['title']}: series of {charger}: {target['expr']}"
                    seen.add(charger)
        assert seen == {chosen}


def check_blind_fleet(prom: Prometheus, names: list[str], device_job: str) -> None:
    """The exporter is stopped: every charger is unmonitored, none counted healthy, no total power of 0 W."""
    fleet = dashboards()["pulsatrix-fleet.json"]
    selection: dict[str, list[str] | None] = {"job": [device_job], "site": None, "charger": None}
    expand = expander(fleet, selection | {"exporter_job": [EXPORTER_JOB]})
    tiles = {p["title"]: p for p in panels(fleet) if p["type"] == "stat"}

    def tile(title: str) -> list[float]:
        return [float(s["value"][1]) for t in tiles[title]["targets"] for s in prom.query(expand(t["expr"]))]

    deadline = time.monotonic() + 20
    while tile("Unmonitored") != [len(names)] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert tile("Unmonitored") == [len(names)]
    for title in FLEET_TILES:
        if title != "Unmonitored":
            assert tile(title) == [0], title
    assert tile("Total power") == [], "no data, not 0 W"
    assert tile("Exporter processes up") == [0, 1]


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

        with run_exporter(config_path, tmp_path / "exporter") as exporter, contextlib.ExitStack() as stack:
            # The long-term store the README's "longterm" profile adds: the shipped setup's Prometheus remote-writes
            # everything it scrapes and records into VictoriaMetrics, and the dashboards are read from there too.
            vm = stack.enter_context(run_victoriametrics(tmp_path / "victoria-metrics"))
            shipped = shipped_prometheus_config(exporter) | {"remote_write": [{"url": f"{vm.url}/api/v1/write"}]}
            setups = {
                "shipped probe setup": (shipped, PROBE_JOB),
                "single job": (single_job_prometheus_config(exporter), EXPORTER_JOB),
            }
            rules = shipped_fast_rules(tmp_path / "rules", group_interval="2s")
            proms = {
                name: stack.enter_context(run_monitoring(tmp_path / f"setup-{i}", config, rule_files=rules)).prometheus
                for i, (name, (config, _)) in enumerate(setups.items())
            }
            for prom in proms.values():
                wait_for_data(prom, names)
            # VictoriaMetrics answers the Prometheus query API on its own port: read it the same way.
            longterm = Prometheus("victoria-metrics", vm.proc, vm.port, vm.workdir, vm.log)
            wait_for_data(longterm, names)
            readers = {**proms, "shipped probe setup, read from VictoriaMetrics": longterm}
            jobs = {name: job for name, (_, job) in setups.items()} | {
                "shipped probe setup, read from VictoriaMetrics": PROBE_JOB
            }
            for name, prom in readers.items():
                try:
                    check_dashboards(prom, names, device_job=jobs[name])
                except AssertionError as error:
                    raise AssertionError(f"{name}: {error}") from error
            exporter.stop()
            for name, prom in proms.items():
                try:
                    check_blind_fleet(prom, names, device_job=setups[name][1])
                except AssertionError as error:
                    raise AssertionError(f"{name}: {error}") from error
