"""Generate the Grafana dashboards in ``grafana/dashboards/`` from code.

Every metric name comes from :mod:`exporter.catalogue` through :func:`m`, so renaming or removing a metric breaks
this build instead of leaving a dead panel behind. The JSON files are committed; ``tests/test_dashboards.py`` checks
that they equal what this script generates.

    .venv/bin/python grafana/build_dashboards.py          # rewrite grafana/dashboards/*.json
    .venv/bin/python grafana/build_dashboards.py --check  # exit 1 if a committed file is out of date

The dashboards use the classic dashboard JSON model (importable by hand and by file provisioning). Every query goes
through the ``datasource`` template variable; nothing names a concrete data source, so there is no ``__inputs``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from exporter.catalogue import BY_NAME

Json = dict[str, Any]

DASHBOARDS_DIR: Final = Path(__file__).resolve().parent / "dashboards"
SCHEMA_VERSION: Final = 39
DATASOURCE: Final[Json] = {"type": "prometheus", "uid": "${datasource}"}
TAGS: Final = ["pulsatrix", "ev-charging"]

# Both firmware vocabularies of `state` (see exporter.metrics.STATE_SETS), grouped the way the fleet view counts them.
CHARGING_STATES: Final = "Charging|CHARGING"
SUSPENDED_STATES: Final = "SuspendedEV|SuspendedEVSE|SUSPENDED_EV|SUSPENDED_EVSE"
IDLE_STATES: Final = "Idle|IDLE"
GROUPED_STATES: Final = f"{CHARGING_STATES}|{SUSPENDED_STATES}|{IDLE_STATES}"

# The exporter processes are found by their own metric, whatever their job is called: the `exporter_job` variable
# lists the jobs that have pulsatrix_exporter_build_info (served on /metrics and /-/metrics, never on /probe).
# Exporter-process panels select `job=~"$exporter_job"`, never `$job`: in probe mode `$job` is the probe job, whose
# `up` counts chargers, not processes, and which carries neither build info nor process metrics.
EXPORTER_JOB_SELECTOR: Final = 'job=~"$exporter_job"'
# The labels that identify one charger's series (joins between its metrics match on them).
ID: Final = "charger, instance, job"
# Fault values: IEC 61851 E, F, R in both forms, and the fault states of both vocabularies.
FAULT_STATUS: Final = "[EFR]1?"
FAULT_STATES: Final = "Faulted|FAILED"
# pulsatrix_scrape_errors_total exists only for (endpoint, reason) pairs that occurred: a healthy fleet has none.
# Panels by reason then show one 0 series named "none" instead of "No data".
NO_ERRORS: Final = ' or label_replace(vector(0), "reason", "none", "", "")'
# How long a charger that stopped reporting still counts as "unmonitored" (the alert rules use one day too).
KNOWN_FOR: Final = "1d"

# Grid limits (EN 50160: 230 V ± 10 %, 50 Hz; frequency band of normal operation ± 0.2 Hz).
VOLTAGE_MIN, VOLTAGE_MAX = 207, 253
FREQUENCY_MIN, FREQUENCY_MAX = 49.8, 50.2


def m(name: str) -> str:
    """A metric name, checked against the catalogue (a renamed metric fails the build)."""
    if name not in BY_NAME:
        raise KeyError(f"{name} is not in exporter.catalogue")
    return name


def s(name: str, extra: str = "") -> str:
    """A selector of a per-charger metric, filtered by the dashboard's job, charger and site variables."""
    if not BY_NAME[m(name)].per_charger:
        raise ValueError(f"{name} has no charger label")
    matchers = 'job=~"$job", charger=~"$charger", site=~"$site"'
    return f"{name}{{{matchers}{', ' + extra if extra else ''}}}"


def e(name: str) -> str:
    """A selector of a metric of the exporter processes (the `exporter_job` variable): Prometheus' ``up``,
    ``process_*`` or a catalogue metric without a charger label (build info)."""
    if name.startswith("pulsatrix_") and BY_NAME[m(name)].per_charger:
        raise ValueError(f"{name} is a per-charger metric: use s()")
    return f"{name}{{{EXPORTER_JOB_SELECTOR}}}"


def r(name: str, extra: str = "") -> str:
    """A selector of a per-charger recording rule of deploy/prometheus/alerts.yml, filtered like s()."""
    if not name.startswith("pulsatrix:charger_"):
        raise ValueError(f"{name} is not a per-charger recording rule")
    matchers = 'job=~"$job", charger=~"$charger", site=~"$site"'
    return f"{name}{{{matchers}{', ' + extra if extra else ''}}}"


def faulted() -> str:
    """One series per charger that reports a fault (state, vehicle or controller status)."""
    state = s("pulsatrix_state", 'state=~"' + FAULT_STATES + '"')
    vehicle = s("pulsatrix_vehicle_status", 'status=~"' + FAULT_STATUS + '"')
    controller = s("pulsatrix_charge_controller_status", 'status=~"' + FAULT_STATUS + '"')
    return (
        f"(max by ({ID}, site) ({state} == 1)"
        f" or on ({ID}) max by ({ID}, site) ({vehicle} == 1)"
        f" or on ({ID}) max by ({ID}, site) ({controller} == 1))"
    )


def answering() -> str:
    """Chargers of which at least one endpoint answered in the last scrape (some data)."""
    return f"(max by ({ID}, site) ({s('pulsatrix_endpoint_up')}) == 1)"


def silent() -> str:
    """Chargers none of whose endpoints answered in the last scrape (no data)."""
    return f"(max by ({ID}, site) ({s('pulsatrix_endpoint_up')}) == 0)"


def unmonitored() -> str:
    """Chargers seen within KNOWN_FOR that have no current series: their exporter or their probe is down."""
    up = s("pulsatrix_up")
    return f"(max by ({ID}, site) (last_over_time({up}[{KNOWN_FOR}])) unless on ({ID}) {up})"


# --- field config helpers ----------------------------------------------------------------------------------------


def steps(*pairs: tuple[str, float | None]) -> Json:
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for color, value in pairs]}


GREEN: Final = steps(("green", None))
UP_DOWN: Final = [
    {
        "type": "value",
        "options": {
            "0": {"text": "DOWN", "color": "red", "index": 0},
            "1": {"text": "UP", "color": "green", "index": 1},
        },
    }
]
VOLTAGE_BAND: Final = steps(("red", None), ("green", VOLTAGE_MIN), ("red", VOLTAGE_MAX))
FREQUENCY_BAND: Final = steps(("red", None), ("green", FREQUENCY_MIN), ("red", FREQUENCY_MAX))


def yes_no(one: str, zero: str, one_color: str = "green", zero_color: str = "text") -> list[Json]:
    return [
        {
            "type": "value",
            "options": {
                "0": {"text": zero, "color": zero_color, "index": 0},
                "1": {"text": one, "color": one_color, "index": 1},
            },
        }
    ]


def override(name: str, **props: Any) -> Json:
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": key.replace("__", "."), "value": value} for key, value in props.items()],
    }


def regex_color(pattern: str, color: str) -> Json:
    return {
        "matcher": {"id": "byRegexp", "options": pattern},
        "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}],
    }


# --- targets and panels ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False
    interval: str = ""


def _target(target: Target, ref: str) -> Json:
    out: Json = {
        "datasource": DATASOURCE,
        "refId": ref,
        "expr": target.expr,
        "legendFormat": target.legend or "__auto",
        "range": not target.instant,
        "instant": target.instant,
        "format": "table" if target.table else "time_series",
    }
    if target.interval:
        out["interval"] = target.interval
    return out


def timeseries_custom(
    fill: int = 10, bars: bool = False, stack: bool = False, thresholds: str = "off", bar_alignment: int = 0
) -> Json:
    return {
        "drawStyle": "bars" if bars else "line",
        "lineInterpolation": "linear",
        "lineWidth": 1,
        "fillOpacity": 80 if bars else fill,
        "gradientMode": "none",
        "showPoints": "never",
        "pointSize": 4,
        "spanNulls": False,
        "axisPlacement": "auto",
        "axisLabel": "",
        "axisCenteredZero": False,
        "barAlignment": bar_alignment,  # -1: bar ends at its timestamp, 0: centred, 1: starts there
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        "thresholdsStyle": {"mode": thresholds},
        "hideFrom": {"legend": False, "tooltip": False, "viz": False},
        **({"axisSoftMin": 0} if stack or bars else {}),
    }


LEGEND_TABLE: Final[Json] = {"displayMode": "table", "placement": "right", "showLegend": True, "calcs": ["lastNotNull"]}
LEGEND_LIST: Final[Json] = {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []}
TOOLTIP: Final[Json] = {"mode": "multi", "sort": "desc"}
REDUCE_LAST: Final[Json] = {"calcs": ["lastNotNull"], "fields": "", "values": False}


def stat_options(color_mode: str = "value", graph: bool = False, text: str = "auto") -> Json:
    return {
        "reduceOptions": REDUCE_LAST,
        "colorMode": color_mode,
        "graphMode": "area" if graph else "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "textMode": text,
        "wideLayout": True,
        "showPercentChange": False,
    }


def bargauge_options(display: str = "basic") -> Json:
    return {
        "reduceOptions": REDUCE_LAST,
        "displayMode": display,
        "orientation": "horizontal",
        "showUnfilled": True,
        "valueMode": "color",
        "namePlacement": "auto",
        "sizing": "auto",
        "minVizHeight": 16,
        "minVizWidth": 8,
        "maxVizHeight": 300,
    }


def timeseries_options(legend: Json = LEGEND_LIST) -> Json:
    return {"legend": legend, "tooltip": TOOLTIP}


def state_timeline_options() -> Json:
    return {
        "mergeValues": True,
        "showValue": "never",
        "alignValue": "left",
        "rowHeight": 0.8,
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": False},
        "tooltip": {"mode": "single", "sort": "none"},
    }


def table_options(sort_by: str = "", desc: bool = False) -> Json:
    return {
        "showHeader": True,
        "cellHeight": "sm",
        "footer": {"show": False, "reducer": ["sum"], "fields": "", "countRows": False},
        "sortBy": [{"displayName": sort_by, "desc": desc}] if sort_by else [],
    }


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    panels: list[Json] = field(default_factory=list)
    _next_id: int = 1
    _x: int = 0
    _y: int = 0
    _row_height: int = 0
    _into: list[Json] | None = None

    def row(self, title: str, collapsed: bool = False) -> None:
        """A row; the panels added after a collapsed row live inside it (shown when it is opened)."""
        self._newline()
        row: Json = {
            "id": self._id(),
            "type": "row",
            "title": title,
            "collapsed": collapsed,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self._y},
            "panels": [],
        }
        self.panels.append(row)
        self._into = row["panels"] if collapsed else self.panels
        self._y += 1

    def stat(self, title: str, description: str, unit: str, targets: list[Target], **kw: Any) -> None:
        """A stat panel (4×4 with the default stat options unless told otherwise)."""
        kw.setdefault("w", 4)
        kw.setdefault("h", 4)
        kw.setdefault("options", stat_options())
        self.add("stat", title, description, unit, targets, **kw)

    def label_table(
        self,
        title: str,
        description: str,
        expr: str,
        columns: dict[str, str],
        *,
        w: int,
        h: int,
        unit: str = "none",
        value: str = "",
        extra_defaults: Json | None = None,
    ) -> None:
        """A table of one instant query's series: ``columns`` maps label -> column title, in order; the sample
        value is shown as column ``value`` (hidden when empty)."""
        order = {label: i for i, label in enumerate(columns)}
        rename = {"charger": "Charger", "site": "Site", **columns}
        exclude = {"Time": True, "__name__": True, "job": True, "instance": True}
        if value:
            order["Value"] = len(order)
            rename["Value"] = value
        else:
            exclude["Value"] = True
        self.add(
            "table",
            title,
            description,
            unit,
            [Target(expr, instant=True, table=True)],
            w=w,
            h=h,
            custom={"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False},
            options=table_options("Charger"),
            transformations=[
                {
                    "id": "organize",
                    "options": {"excludeByName": exclude, "indexByName": order, "renameByName": rename},
                }
            ],
            extra_defaults=extra_defaults,
        )

    def add(
        self,
        type_: str,
        title: str,
        description: str,
        unit: str,
        targets: list[Target],
        *,
        w: int,
        h: int,
        thresholds: Json = GREEN,
        mappings: list[Json] | None = None,
        custom: Json | None = None,
        options: Json | None = None,
        overrides: list[Json] | None = None,
        transformations: list[Json] | None = None,
        color: Json | None = None,
        extra_defaults: Json | None = None,
        interval: str = "",
        time_from: str = "",
    ) -> None:
        if self._x + w > 24:
            self._newline()
        defaults: Json = {
            "unit": unit,
            "color": color or {"mode": "palette-classic" if type_ == "timeseries" else "thresholds"},
            "thresholds": thresholds,
            "mappings": mappings or [],
            **(extra_defaults or {}),
        }
        if custom is not None:
            defaults["custom"] = custom
        panel: Json = {
            "id": self._id(),
            "type": type_,
            "title": title,
            "description": description,
            "datasource": DATASOURCE,
            "gridPos": {"h": h, "w": w, "x": self._x, "y": self._y},
            "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
            "options": options or {},
            "targets": [_target(t, chr(ord("A") + i)) for i, t in enumerate(targets)],
        }
        if interval:
            panel["interval"] = interval
        if time_from:
            panel["timeFrom"] = time_from  # this panel's own time range, whatever the dashboard's
        if transformations:
            panel["transformations"] = transformations
        (self.panels if self._into is None else self._into).append(panel)
        self._x += w
        self._row_height = max(self._row_height, h)

    def _newline(self) -> None:
        self._y += self._row_height
        self._x = 0
        self._row_height = 0

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def to_json(self, variables: list[Json], links: list[Json]) -> Json:
        return {
            "annotations": {"list": []},
            "description": self.description,
            "editable": True,
            "fiscalYearStartMonth": 0,
            "graphTooltip": 1,
            "id": None,
            "links": links,
            "liveNow": False,
            "panels": self.panels,
            "refresh": "30s",
            "schemaVersion": SCHEMA_VERSION,
            "tags": TAGS,
            "templating": {"list": variables},
            "time": {"from": "now-6h", "to": "now"},
            "timepicker": {},
            "timezone": "browser",
            "title": self.title,
            "uid": self.uid,
            "version": 1,
            "weekStart": "",
        }


# --- template variables ------------------------------------------------------------------------------------------


def datasource_variable() -> Json:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "options": [],
        "refresh": 1,
        "regex": "",
        "skipUrlSync": False,
    }


def query_variable(name: str, label: str, query: str, all_value: str | None, multi: bool = True) -> Json:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "current": {},
        "hide": 0,
        "includeAll": multi,
        # The All value is a regex; `.*` also matches chargers that have no such label at all (empty value). None:
        # Grafana joins the values it found, `(a|b)`.
        "allValue": all_value,
        "multi": multi,
        "options": [],
        "refresh": 2,
        "regex": "",
        "sort": 1,
        "skipUrlSync": False,
    }


def variables(single_charger: bool = False) -> list[Json]:
    """`job` is the job of the device series, in either setup: `pulsatrix` (the /probe job) or
    `pulsatrix-exporter` (the exporter's /metrics scraped as a whole), or whatever the user named them.
    `exporter_job` is the job(s) of the exporter processes (see EXPORTER_JOB_SELECTOR)."""
    up = m("pulsatrix_up")
    charger = query_variable(
        "charger",
        "Charger",
        f'label_values({up}{{job=~"$job", site=~"$site"}}, charger)',
        None if single_charger else ".+",
        multi=not single_charger,
    )
    return [
        datasource_variable(),
        query_variable("job", "Job", f"label_values({up}, job)", ".+"),
        query_variable("site", "Site", f'label_values({up}{{job=~"$job"}}, site)', ".*"),
        charger,
        {
            **query_variable(
                "exporter_job", "Exporter job", f"label_values({m('pulsatrix_exporter_build_info')}, job)", None
            ),
            "description": "The job(s) whose targets are exporter processes: those with pulsatrix_exporter_build_info.",
        },
    ]


def tariff_variable() -> Json:
    return {
        "name": "tariff",
        "label": "Tariff per kWh",
        "description": "Price of one kWh, for the cost panels (in your currency).",
        "type": "textbox",
        "query": "0.30",
        "current": {"text": "0.30", "value": "0.30"},
        "options": [{"selected": True, "text": "0.30", "value": "0.30"}],
        "hide": 0,
        "skipUrlSync": False,
    }


def links(other_uid: str, other_title: str) -> list[Json]:
    """A link to the other dashboard that keeps the time range, the data source and the job, and nothing else: the
    fleet view is not narrowed to the charger shown in the detail, and the detail opens on one charger."""
    return [
        {
            "title": other_title,
            "type": "link",
            "url": f"/d/{other_uid}?${{datasource:queryparam}}&${{job:queryparam}}",
            "icon": "dashboard",
            "includeVars": False,
            "keepTime": True,
            "asDropdown": False,
            "targetBlank": False,
            "tags": [],
            "tooltip": "",
        }
    ]


# --- fleet overview ----------------------------------------------------------------------------------------------


def fleet() -> Json:
    d = Dashboard(
        "pulsatrix-fleet",
        "Pulsatrix fleet overview",
        "Every charger at a glance, the ones in trouble first: status, state, power per site against its capacity, "
        "energy, cost and use per site and period, and the exporter's own health.",
    )
    up = s("pulsatrix_up")

    def count(expr: str) -> str:
        return f"count({expr}) or vector(0)"

    # Every charger is counted in exactly one tile: Unmonitored (no series), Down (no endpoint answers), Faulted,
    # Partial data (some endpoints fail), or its state (every endpoint answers, no fault).
    healthy = f"and on ({ID}) ({up} == 1) unless on ({ID}) {faulted()}"

    d.row("Fleet now")
    for title, description, states, color in (
        ("Charging", "Chargers whose state is Charging.", CHARGING_STATES, "green"),
        ("Suspended", "Chargers whose state is SuspendedEV or SuspendedEVSE.", SUSPENDED_STATES, "yellow"),
        ("Idle", "Chargers whose state is Idle.", IDLE_STATES, "blue"),
    ):
        d.add(
            "stat",
            title,
            description + " Only chargers whose every endpoint answered and that report no fault; both firmware "
            "vocabularies are counted; 0 when there are none.",
            "none",
            [Target(count(s("pulsatrix_state", 'state=~"' + states + '"') + f" == 1 {healthy}"), title, instant=True)],
            w=3,
            h=4,
            color={"mode": "fixed", "fixedColor": color},
            options=stat_options(),
        )
    d.stat(
        "Other state",
        "Chargers in any other state without a fault (EVConnected, Finishing, Reserved, Unavailable, ...), whose "
        "every endpoint answered. A normal part of a busy day, so not coloured.",
        "none",
        [
            Target(
                count(s("pulsatrix_state", 'state!~"' + f"{GROUPED_STATES}|{FAULT_STATES}" + '"') + f" == 1 {healthy}"),
                "other",
                instant=True,
            )
        ],
        w=3,
        color={"mode": "fixed", "fixedColor": "text"},
        options=stat_options(),
    )
    d.stat(
        "Faulted",
        "Chargers that report a fault: the state Faulted / FAILED, or IEC 61851 status E, F or R of the vehicle or "
        "of the controller (PulsatrixChargerFault fires after 5 minutes).",
        "none",
        [Target(count(faulted()), "faulted", instant=True)],
        w=3,
        thresholds=steps(("green", None), ("red", 1)),
        options=stat_options(color_mode="background"),
    )
    d.stat(
        "Partial data",
        "Chargers that answer on some endpoints but not on all in the last scrape: their data is partial "
        "(PulsatrixEndpointFailing). Faulted chargers are counted under Faulted.",
        "none",
        [
            Target(
                count(f"({up} == 0) and on ({ID}) {answering()} unless on ({ID}) {faulted()}"), "partial", instant=True
            )
        ],
        w=3,
        thresholds=steps(("green", None), ("orange", 1)),
        options=stat_options(color_mode="background"),
    )
    d.stat(
        "Down",
        "Chargers none of whose four endpoints gave a usable reply in the last scrape: no data at all "
        "(PulsatrixChargerDown).",
        "none",
        [Target(count(silent()), "down", instant=True)],
        w=3,
        thresholds=steps(("green", None), ("red", 1)),
        options=stat_options(color_mode="background"),
    )
    d.stat(
        "Unmonitored",
        f"Chargers Prometheus has seen in the last {KNOWN_FOR} that have no current data: their exporter or their "
        "/probe target cannot be scraped. They are not healthy, only invisible (PulsatrixChargerUnmonitored).",
        "none",
        [Target(count(unmonitored()), "unmonitored", instant=True)],
        w=3,
        thresholds=steps(("green", None), ("purple", 1)),
        options=stat_options(color_mode="background"),
    )

    # Status of each charger, worst first: 4 unmonitored, 3 down, 2 faulted, 1 partial data, 0 ok.
    status = (
        f"max by (charger, site) ((0 * {unmonitored()} + 4)"
        f" or (0 * {silent()} + 3)"
        f" or (0 * {faulted()} + 2)"
        f" or (0 * max by ({ID}, site) ({up} == 0) + 1)"
        f" or (0 * max by ({ID}, site) ({up})))"
    )
    since = (
        f"max by (charger) ({r('pulsatrix:charger_down_since_timestamp_seconds')}"
        f" or on ({ID}) max without (state) ({r('pulsatrix:charger_state_since_timestamp_seconds')})"
        f" or on ({ID}) {r('pulsatrix:charger_last_seen_timestamp_seconds')}) * 1000"
    )
    state_colors = [
        {"type": "regex", "options": {"pattern": f"^({CHARGING_STATES})$", "result": {"color": "green", "index": 0}}},
        {"type": "regex", "options": {"pattern": f"^({SUSPENDED_STATES})$", "result": {"color": "yellow", "index": 1}}},
        {"type": "regex", "options": {"pattern": f"^({IDLE_STATES})$", "result": {"color": "blue", "index": 2}}},
        {
            "type": "regex",
            "options": {"pattern": f"^({FAULT_STATES}|Unavailable)$", "result": {"color": "red", "index": 3}},
        },
    ]
    vehicle_colors = [
        {"type": "regex", "options": {"pattern": "^[CD]\\d?$", "result": {"color": "green", "index": 0}}},
        {"type": "regex", "options": {"pattern": f"^{FAULT_STATUS}$", "result": {"color": "red", "index": 1}}},
    ]
    status_map = [
        {
            "type": "value",
            "options": {
                "0": {"text": "ok", "color": "green", "index": 0},
                "1": {"text": "partial data", "color": "orange", "index": 1},
                "2": {"text": "faulted", "color": "red", "index": 2},
                "3": {"text": "down", "color": "red", "index": 3},
                "4": {"text": "unmonitored", "color": "purple", "index": 4},
            },
        }
    ]
    d.add(
        "table",
        "Chargers",
        "One row per charger, chargers in trouble first (status: unmonitored, down, faulted, partial data, ok), "
        "with since when it is in that status or state (from the recording rules of alerts.yml), its state and "
        "vehicle status (coloured), power, energy of the current (or last) session, how many of the four "
        "endpoints failed in the last scrape, scrape errors in the time range, the last scrape duration and the "
        "last error (endpoint: reason, and when). Click a charger for its detail dashboard.",
        "none",
        [
            Target(status, instant=True, table=True),
            Target(f"max by (charger, state) ({s('pulsatrix_state')} == 1)", instant=True, table=True),
            Target(
                "max by (charger, vehicle_status) (label_replace("
                f'{s("pulsatrix_vehicle_status")} == 1, "vehicle_status", "$1", "status", "(.*)"))',
                instant=True,
                table=True,
            ),
            Target(f"sum by (charger) ({s('pulsatrix_active_power_watts')})", instant=True, table=True),
            Target(f"sum by (charger) ({s('pulsatrix_session_energy_joules')}) / 3.6e6", instant=True, table=True),
            Target(f"sum by (charger) (1 - {s('pulsatrix_endpoint_up')})", instant=True, table=True),
            # Only (endpoint, reason) pairs that occurred have a counter: healthy chargers get 0, not an empty cell.
            Target(
                f"sum by (charger) (increase({s('pulsatrix_scrape_errors_total')}[$__range]))"
                f" or sum by (charger) (0 * {up})",
                instant=True,
                table=True,
            ),
            Target(f"max by (charger) ({s('pulsatrix_scrape_duration_seconds')})", instant=True, table=True),
            Target(
                "max by (charger, last_error) (label_join(topk by (charger) (1, "
                f'{s("pulsatrix_last_error_timestamp_seconds")}), "last_error", ": ", "endpoint", "reason")) * 1000',
                instant=True,
                table=True,
            ),
            Target(since, instant=True, table=True),
        ],
        w=24,
        h=20,
        custom={"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False, "filterable": True},
        options=table_options("Status", desc=True),
        transformations=[
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True, "Value #B": True, "Value #C": True},
                    "indexByName": {
                        "charger": 0,
                        "site": 1,
                        "Value #A": 2,
                        "Value #J": 3,
                        "state": 4,
                        "vehicle_status": 5,
                        "Value #D": 6,
                        "Value #E": 7,
                        "Value #F": 8,
                        "Value #G": 9,
                        "Value #H": 10,
                        "last_error": 11,
                        "Value #I": 12,
                    },
                    "renameByName": {
                        "charger": "Charger",
                        "site": "Site",
                        "Value #A": "Status",
                        "Value #J": "Since",
                        "state": "State",
                        "vehicle_status": "Vehicle",
                        "Value #D": "Power",
                        "Value #E": "Session energy",
                        "Value #F": "Failing endpoints",
                        "Value #G": "Scrape errors (range)",
                        "Value #H": "Scrape duration",
                        "last_error": "Last error",
                        "Value #I": "Last error at",
                    },
                },
            },
        ],
        overrides=[
            override(
                "Charger",
                links=[
                    {
                        "title": "Charger detail",
                        "url": "/d/pulsatrix-charger?${datasource:queryparam}&${job:queryparam}"
                        "&var-charger=${__value.raw:percentencode}&${__url_time_range}",
                    }
                ],
            ),
            override("Status", mappings=status_map, custom__cellOptions={"type": "color-background"}),
            override("Since", unit="dateTimeFromNow"),
            override("State", mappings=state_colors, custom__cellOptions={"type": "color-text"}),
            override("Vehicle", mappings=vehicle_colors, custom__cellOptions={"type": "color-text"}),
            override("Power", unit="watt", decimals=0),
            override("Session energy", unit="kwatth", decimals=2),
            override(
                "Failing endpoints",
                thresholds=steps(("green", None), ("red", 1)),
                custom__cellOptions={"type": "color-text"},
            ),
            override(
                "Scrape errors (range)",
                decimals=0,
                thresholds=steps(("green", None), ("orange", 1)),
                custom__cellOptions={"type": "color-text"},
            ),
            override("Scrape duration", unit="s"),
            override("Last error at", unit="dateTimeAsIso"),
        ],
    )

    power = s("pulsatrix_active_power_watts")
    capacity = 'pulsatrix:site_capacity_watts{site=~"$site"}'
    d.row("Sites and power")
    d.stat(
        "Total power",
        "Sum of the active power of the selected chargers right now. No data (not 0 W) while no charger is "
        "monitored: see Unmonitored.",
        "watt",
        [Target(f"sum({power})", "total", instant=True)],
        w=4,
        h=8,
        options=stat_options(),
    )
    d.add(
        "timeseries",
        "Site power vs. capacity",
        "Active power of each site (sum of its chargers) over time, with the site's capacity as a dashed line. "
        "The capacity is configured once, in deploy/prometheus/sites.yml (recording rule "
        "pulsatrix:site_capacity_watts); a site without one shows no line.",
        "watt",
        [
            Target(f"sum by (site) ({power})", "{{site}}"),
            Target(f"max by (site) ({capacity})", "{{site}} capacity"),
        ],
        w=12,
        h=8,
        custom=timeseries_custom(fill=10),
        options=timeseries_options(LEGEND_TABLE),
        overrides=[
            {
                "matcher": {"id": "byRegexp", "options": ".* capacity$"},
                "properties": [
                    {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
                    {"id": "custom.fillOpacity", "value": 0},
                ],
            }
        ],
        extra_defaults={"min": 0},
    )
    d.add(
        "bargauge",
        "Site load now",
        "Each site's power right now as a share of its capacity (sites.yml): orange from 80 %, red from 95 %.",
        "percentunit",
        [Target(f"sum by (site) ({power}) / on (site) max by (site) ({capacity})", "{{site}}", instant=True)],
        w=8,
        h=8,
        thresholds=steps(("green", None), ("orange", 0.8), ("red", 0.95)),
        options=bargauge_options("gradient"),
        extra_defaults={"min": 0, "max": 1},
    )
    d.add(
        "timeseries",
        "Power per power domain",
        "Active power per site and power domain (the load-management group the charger reports in "
        "pulsatrix_charger_info), stacked.",
        "watt",
        [
            Target(
                f"sum by (site, power_domain) ({power} * on ({ID}) group_left (power_domain) "
                f"{s('pulsatrix_charger_info')})",
                "{{site}} {{power_domain}}",
            )
        ],
        w=12,
        h=8,
        custom=timeseries_custom(fill=30, stack=True),
        options=timeseries_options(LEGEND_TABLE),
    )
    d.add(
        "timeseries",
        "Power per charger",
        "Active power of each charger, stacked: which chargers make up the total.",
        "watt",
        [Target(f"sum by (charger) ({power})", "{{charger}}")],
        w=12,
        h=8,
        custom=timeseries_custom(fill=30, stack=True),
        options=timeseries_options(LEGEND_TABLE),
    )

    energy = r("pulsatrix:charger_energy_joules:increase1h")
    d.row("Energy, cost and use")
    hourly = (
        " From the hourly recording rule pulsatrix:charger_energy_joules:increase1h (alerts.yml): cheap over "
        "months, accurate to the hour at both ends."
    )
    for title, period, time_from in (
        ("Energy today per site", "since midnight (the dashboard's time zone)", "now/d"),
        ("Energy this month per site", "since the first of the month", "now/M"),
        ("Energy in the time range per site", "in the dashboard's time range", ""),
    ):
        d.add(
            "bargauge",
            title,
            f"Energy the chargers of each site imported {period}, in kWh.{hourly}",
            "kwatth",
            [Target(f"sort_desc(sum by (site) (sum_over_time({energy}[$__range])) / 3.6e6)", "{{site}}", instant=True)],
            w=8,
            h=6,
            options=bargauge_options("gradient"),
            color={"mode": "continuous-GrYlRd"},
            extra_defaults={"decimals": 1, "min": 0},
            time_from=time_from,
        )
    sessions = r("pulsatrix:charger_session_starts:changes1h")
    ratio = r("pulsatrix:charger_charging_ratio:avg1h")
    per = {"site": "Site", "charger": "Charger"}
    for by, w in (("site", 10), ("charger", 14)):
        group = "site" if by == "site" else "charger, site"
        d.add(
            "table",
            f"Energy, cost and use per {by} in the time range",
            f"Per {by}, in the dashboard's time range: energy (kWh), its cost at the tariff variable (price per "
            "kWh; set it at the top), the number of sessions started, and utilisation (share of the time spent "
            f"charging). For a day or a month, pick *Today so far* or *This month so far* in the time picker.{hourly}",
            "none",
            [
                Target(f"sum by ({group}) (sum_over_time({energy}[$__range])) / 3.6e6", instant=True, table=True),
                Target(
                    f"sum by ({group}) (sum_over_time({energy}[$__range])) / 3.6e6 * $tariff", instant=True, table=True
                ),
                Target(f"sum by ({group}) (sum_over_time({sessions}[$__range]))", instant=True, table=True),
                Target(f"avg by ({group}) (avg_over_time({ratio}[$__range]))", instant=True, table=True),
            ],
            w=w,
            h=8,
            custom={"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False},
            options=table_options("Energy", desc=True),
            transformations=[
                {"id": "merge", "options": {}},
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True},
                        "indexByName": {by: 0, "site": 1, "Value #A": 2, "Value #B": 3, "Value #C": 4, "Value #D": 5},
                        "renameByName": {
                            by: per[by],
                            "site": "Site",
                            "Value #A": "Energy",
                            "Value #B": "Cost",
                            "Value #C": "Sessions",
                            "Value #D": "Utilisation",
                        },
                    },
                },
            ],
            overrides=[
                override("Energy", unit="kwatth", decimals=1),
                override("Cost", decimals=2),
                override("Sessions", decimals=0),
                override("Utilisation", unit="percentunit", decimals=0),
            ],
        )
    d.add(
        "timeseries",
        "Sessions per day per site",
        "Charging sessions started per calendar day and site (the last 7 days and today so far), from the hourly "
        "recording rule pulsatrix:charger_session_starts:changes1h. Days as in Energy per charger per day.",
        "none",
        [
            Target(f"sum by (site) (sum_over_time({sessions}[1d] offset -1d))", "{{site}}", interval="1d"),
        ],
        w=8,
        h=8,
        custom=timeseries_custom(bars=True, stack=True, bar_alignment=1),
        options=timeseries_options(LEGEND_TABLE),
        extra_defaults={"decimals": 0},
        time_from="7d",
    )
    d.add(
        "timeseries",
        "Energy per charger per day",
        "Energy each charger imported per calendar day, in kWh: the last 7 days and today so far (today's bar "
        "grows until midnight). Days are those of the dashboard's time zone (the browser's unless the dashboard "
        "sets one): with a 1-day step Grafana evaluates the query at each midnight of that time zone, and each "
        "bar, drawn from that midnight, is the increase of the energy meter over the 24 h after it "
        "(`[1d] offset -1d`). Grafana uses today's UTC offset for every day, so after a daylight-saving change "
        "the earlier days run from 23:00 or 01:00. A meter reading that steps backwards even slightly "
        "(12345.0 → 12344.9 kWh) counts as a counter reset: that day's bar then includes the whole reading "
        "(the PulsatrixEnergyMeterWentBackwards alert fires).",
        "kwatth",
        [
            Target(
                f"sum by (charger) (increase({s('pulsatrix_energy_imported_joules_total')}[1d] offset -1d)) / 3.6e6",
                "{{charger}}",
                interval="1d",
            )
        ],
        w=16,
        h=8,
        custom=timeseries_custom(bars=True, stack=True, bar_alignment=1),
        options=timeseries_options(LEGEND_TABLE),
        extra_defaults={"decimals": 1},
        time_from="7d",
    )
    d.add(
        "bargauge",
        "Energy in the last 24 h",
        "Energy each charger imported in the 24 hours up to now (a sliding window, not since midnight), largest "
        "first. A meter reading that steps backwards counts as a counter reset and adds the whole reading.",
        "kwatth",
        [
            Target(
                f"sort_desc(sum by (charger) (increase({s('pulsatrix_energy_imported_joules_total')}[1d])) / 3.6e6)",
                "{{charger}}",
                instant=True,
            )
        ],
        w=8,
        h=8,
        options={
            "reduceOptions": REDUCE_LAST,
            "displayMode": "gradient",
            "orientation": "horizontal",
            "showUnfilled": True,
            "valueMode": "color",
            "namePlacement": "auto",
            "sizing": "auto",
            "minVizHeight": 16,
            "minVizWidth": 8,
            "maxVizHeight": 300,
        },
        color={"mode": "continuous-GrYlRd"},
        extra_defaults={"decimals": 1, "min": 0},
    )

    d.row("States and availability")
    d.add(
        "timeseries",
        "Chargers by state",
        "How many chargers were in each state over time (stacked; only chargers whose every endpoint answered), "
        "plus how many had partial data and how many were down: each charger is counted once.",
        "none",
        [
            Target(f"count by (state) ({s('pulsatrix_state')} == 1 and on ({ID}) ({up} == 1))", "{{state}}"),
            Target(f"count(({up} == 0) and on ({ID}) {answering()}) or vector(0)", "partial data"),
            Target(f"count({silent()}) or vector(0)", "down"),
        ],
        w=12,
        h=8,
        custom=timeseries_custom(fill=40, stack=True),
        options=timeseries_options(),
        overrides=[
            regex_color(f"^({CHARGING_STATES})$", "green"),
            regex_color(f"^({SUSPENDED_STATES})$", "yellow"),
            regex_color(f"^({IDLE_STATES})$", "blue"),
            regex_color(f"^({FAULT_STATES})$", "dark-red"),
            regex_color("^partial data$", "orange"),
            regex_color("^down$", "red"),
        ],
        extra_defaults={"decimals": 0},
    )
    d.add(
        "state-timeline",
        "Charger availability",
        "When each charger was up (every endpoint answered) or down (at least one endpoint failed).",
        "none",
        [Target(f"min by (charger) ({s('pulsatrix_up')})", "{{charger}}")],
        w=12,
        h=8,
        mappings=UP_DOWN,
        custom={"lineWidth": 0, "fillOpacity": 80, "hideFrom": {"legend": False, "tooltip": False, "viz": False}},
        options=state_timeline_options(),
    )

    d.row("Exporter health", collapsed=True)
    d.add(
        "timeseries",
        "Scrape duration per charger",
        "How long the exporter took to fetch all four endpoints of each charger. Close to the timeout means the "
        "charger (or the network to it) is slow.",
        "s",
        [Target(f"max by (charger) ({s('pulsatrix_scrape_duration_seconds')})", "{{charger}}")],
        w=8,
        h=8,
        custom=timeseries_custom(),
        options=timeseries_options(LEGEND_TABLE),
    )
    d.add(
        "timeseries",
        "Scrape errors by reason",
        "Failed endpoint fetches per second, by reason (timeout, connect, http_status, unauthorized, invalid_json, "
        "invalid_payload). Flat at 0 on a healthy fleet.",
        "cps",
        [
            Target(
                f"sum by (reason) (rate({s('pulsatrix_scrape_errors_total')}[$__rate_interval])){NO_ERRORS}",
                "{{reason}}",
            )
        ],
        w=8,
        h=8,
        custom=timeseries_custom(),
        options=timeseries_options(),
    )
    d.add(
        "bargauge",
        "Scrape errors in the time range",
        "Failed endpoint fetches in the selected time range, by reason: why chargers failed. The Chargers table "
        "above shows which charger.",
        "none",
        [
            Target(
                f"sort_desc(sum by (reason) (increase({s('pulsatrix_scrape_errors_total')}[$__range]))){NO_ERRORS}",
                "{{reason}}",
                instant=True,
            )
        ],
        w=8,
        h=8,
        thresholds=steps(("green", None), ("orange", 1)),
        options={
            "reduceOptions": REDUCE_LAST,
            "displayMode": "basic",
            "orientation": "horizontal",
            "showUnfilled": True,
            "valueMode": "color",
            "namePlacement": "auto",
            "sizing": "auto",
            "minVizHeight": 16,
            "minVizWidth": 8,
            "maxVizHeight": 300,
        },
        extra_defaults={"decimals": 0, "min": 0},
    )
    d.stat(
        "Exporter processes up",
        "Exporter processes Prometheus reached in its last scrape (`up` of the Exporter job variable: the jobs "
        "that carry pulsatrix_exporter_build_info) and those it did not. Counts processes, not chargers, whichever "
        "chargers, sites or job are selected. Both 0 means no such job is scraped: with a /probe job, add one "
        "that scrapes the exporter's /-/metrics.",
        "none",
        [
            Target(f"sum({e('up')}) or vector(0)", "up", instant=True),
            Target(f"count({e('up')} == 0) or vector(0)", "down", instant=True),
        ],
        w=6,
        thresholds=steps(("red", None), ("green", 1)),
        options=stat_options(color_mode="background", text="value_and_name"),
        overrides=[override("down", thresholds=steps(("green", None), ("red", 1)))],
    )
    d.stat(
        "Exporter version",
        "Each exporter version running, with how many processes run it (pulsatrix_exporter_build_info of "
        "the Exporter job). Two versions at once: an upgrade is under way or a replica was left behind.",
        "none",
        [
            Target(
                f"count by (version) ({e(m('pulsatrix_exporter_build_info'))})",
                "{{version}}",
                instant=True,
            )
        ],
        w=6,
        options=stat_options(text="value_and_name"),
        extra_defaults={"noValue": "no exporter job"},
    )
    d.stat(
        "Invalid values skipped",
        "Device values skipped in the time range because they were null, of a wrong type or infinite.",
        "none",
        [Target(f"sum(increase({s('pulsatrix_invalid_values_total')}[$__range])) or vector(0)", instant=True)],
        w=6,
        thresholds=steps(("green", None), ("orange", 1)),
        extra_defaults={"decimals": 0},
    )
    d.stat(
        "Slowest charger scrape",
        "The longest scrape duration of any selected charger in the last scrape.",
        "s",
        [Target(f"max({s('pulsatrix_scrape_duration_seconds')})", instant=True)],
        w=6,
        thresholds=steps(("green", None), ("orange", 2), ("red", 4)),
        options=stat_options(),
    )
    d.add(
        "timeseries",
        "Exporter CPU",
        "CPU time each exporter process uses per second (1 = one full core), from process_cpu_seconds_total of "
        "the Exporter job. Near 1 the process is saturated: scrapes get slow; add a replica.",
        "percentunit",
        [Target(f"sum by (instance) (rate({e('process_cpu_seconds_total')}[$__rate_interval]))", "{{instance}}")],
        w=12,
        h=8,
        custom=timeseries_custom(),
        options=timeseries_options(LEGEND_TABLE),
        extra_defaults={"min": 0},
    )
    d.add(
        "timeseries",
        "Exporter memory",
        "Resident memory of each exporter process (process_resident_memory_bytes of the Exporter job). It "
        "should stay flat; steady growth points at a leak.",
        "bytes",
        [Target(f"sum by (instance) ({e('process_resident_memory_bytes')})", "{{instance}}")],
        w=12,
        h=8,
        custom=timeseries_custom(),
        options=timeseries_options(LEGEND_TABLE),
        extra_defaults={"min": 0},
    )
    return d.to_json([*variables(), tariff_variable()], links("pulsatrix-charger", "Charger detail"))


# --- charger detail ----------------------------------------------------------------------------------------------


def charger() -> Json:
    d = Dashboard(
        "pulsatrix-charger",
        "Pulsatrix charger detail",
        "One charger in depth: grid, power, the amperage chain, states, the current session and API limits.",
    )
    volt, amp = s("pulsatrix_voltage_volts"), s("pulsatrix_current_amperes")

    d.row("Grid and power")
    d.add(
        "timeseries",
        "Voltage per phase",
        f"Voltage of each phase. The green band is {VOLTAGE_MIN}-{VOLTAGE_MAX} V (230 V ± 10 %).",
        "volt",
        [Target(volt, "{{charger}} {{phase}}")],
        w=12,
        h=8,
        thresholds=VOLTAGE_BAND,
        custom=timeseries_custom(fill=0, thresholds="dashed"),
        options=timeseries_options(LEGEND_TABLE),
        extra_defaults={"decimals": 1},
    )
    d.add(
        "timeseries",
        "Current per phase",
        "Current drawn on each phase. Phases that differ a lot while charging three-phase point at an imbalance.",
        "amp",
        [Target(amp, "{{charger}} {{phase}}")],
        w=12,
        h=8,
        custom=timeseries_custom(),
        options=timeseries_options(LEGEND_TABLE),
        extra_defaults={"decimals": 2, "min": 0},
    )
    d.add(
        "timeseries",
        "Active power vs. V × I",
        "The active power the charger measures, next to the sum of voltage × current over its phases (L1+L2+L3). "
        "The two should be close (the estimate ignores the power factor); a large gap points at a metering problem.",
        "watt",
        [
            Target(s("pulsatrix_active_power_watts"), "{{charger}} measured"),
            Target(f"sum by (charger) ({volt} * {amp})", "{{charger}} V × I (L1+L2+L3)"),
        ],
        w=12,
        h=8,
        custom=timeseries_custom(),
        options=timeseries_options(LEGEND_TABLE),
        overrides=[
            {
                "matcher": {"id": "byRegexp", "options": ".*V × I.*"},
                "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}],
            }
        ],
        extra_defaults={"decimals": 0, "min": 0},
    )
    d.add(
        "timeseries",
        "Grid frequency",
        f"Grid frequency. The green band is {FREQUENCY_MIN}-{FREQUENCY_MAX} Hz.",
        "hertz",
        [Target(s("pulsatrix_grid_frequency_hertz"), "{{charger}}")],
        w=12,
        h=8,
        thresholds=FREQUENCY_BAND,
        custom={**timeseries_custom(fill=0, thresholds="dashed"), "axisSoftMin": 49.7, "axisSoftMax": 50.3},
        options=timeseries_options(LEGEND_TABLE),
        extra_defaults={"decimals": 3},
    )

    d.row("Amperage chain")
    chain = [
        ("pulsatrix_effective_current_limit_amperes", "effective limit"),
        ("pulsatrix_available_current_amperes", "available"),
        ("pulsatrix_allocated_current_amperes", "allocated"),
        ("pulsatrix_commanded_current_amperes", "commanded"),
        ("pulsatrix_signaled_current_amperes", "signaled"),
        ("pulsatrix_api_current_limit_amperes", "API limit"),
    ]
    d.add(
        "timeseries",
        "Amperage chain",
        "From the charger's absolute limit to what the vehicle is told: effective limit (EVSE) → available → "
        "allocated by the load management → commanded by the controller → signaled to the vehicle (pilot PWM), "
        "with the current limit set through the API when there is one.",
        "amp",
        [Target(s(name), f"{{{{charger}}}} {label}") for name, label in chain],
        w=16,
        h=9,
        custom=timeseries_custom(fill=0),
        options=timeseries_options(LEGEND_TABLE),
        overrides=[
            {
                "matcher": {"id": "byRegexp", "options": ".*(effective limit|API limit)$"},
                "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}],
            }
        ],
        extra_defaults={"decimals": 1, "min": 0},
    )
    d.add(
        "bargauge",
        "Amperage chain now",
        "The same chain as a snapshot: where the current is being held back right now.",
        "amp",
        [Target(s(name), f"{{{{charger}}}} {label}", instant=True) for name, label in chain],
        w=8,
        h=9,
        options={
            "reduceOptions": REDUCE_LAST,
            "displayMode": "basic",
            "orientation": "horizontal",
            "showUnfilled": True,
            "valueMode": "color",
            "namePlacement": "auto",
            "sizing": "auto",
            "minVizHeight": 16,
            "minVizWidth": 8,
            "maxVizHeight": 300,
        },
        color={"mode": "fixed", "fixedColor": "blue"},
        extra_defaults={"decimals": 1, "min": 0},
    )

    d.row("States")
    state_custom = {"lineWidth": 0, "fillOpacity": 80, "hideFrom": {"legend": False, "tooltip": False, "viz": False}}
    # No colour in the mapping: each row keeps the colour of its value (overrides below), purple for the rest.
    active = [{"type": "value", "options": {"1": {"text": "active", "index": 0}}}]
    for title, description, name, label, colors in (
        (
            "Charging state",
            "The charger's state over time, one row per state that occurred.",
            "pulsatrix_state",
            "state",
            [
                regex_color(f".*({CHARGING_STATES})$", "green"),
                regex_color(f".*({SUSPENDED_STATES})$", "yellow"),
                regex_color(f".*({IDLE_STATES})$", "blue"),
                regex_color(".*(Faulted|FAILED|Unavailable)$", "red"),
            ],
        ),
        (
            "Vehicle status (IEC 61851)",
            "The vehicle's IEC 61851 status over time (A: no vehicle, B: connected, C/D: charging, E/F: error).",
            "pulsatrix_vehicle_status",
            "status",
            [regex_color(".* [CD]\\d?$", "green"), regex_color(".* [EF]\\d?$", "red")],
        ),
        (
            "Charge controller status (IEC 61851)",
            "The charge controller's IEC 61851 status over time.",
            "pulsatrix_charge_controller_status",
            "status",
            [regex_color(".* [CD]\\d?$", "green"), regex_color(".* [EF]\\d?$", "red")],
        ),
    ):
        d.add(
            "state-timeline",
            title,
            description,
            "none",
            [Target(f"{s(name)} == 1", f"{{{{charger}}}} {{{{{label}}}}}")],
            w=8,
            h=8,
            mappings=active,
            color={"mode": "fixed", "fixedColor": "purple"},
            custom=state_custom,
            options=state_timeline_options(),
            overrides=colors,
        )
    d.add(
        "state-timeline",
        "Up and session",
        "Whether every endpoint answered (up), and whether a charging session was running.",
        "none",
        [
            Target(s("pulsatrix_up"), "{{charger}} up"),
            Target(s("pulsatrix_session_active"), "{{charger}} session"),
        ],
        w=24,
        h=5,
        mappings=yes_no("yes", "no", zero_color="red"),
        custom=state_custom,
        options=state_timeline_options(),
        overrides=[
            {
                "matcher": {"id": "byRegexp", "options": ".* session$"},
                "properties": [{"id": "mappings", "value": yes_no("session", "no session", zero_color="text")}],
            }
        ],
    )

    d.label_table(
        "Last errors",
        "When fetching each endpoint last failed, per reason (timeout, connect, http_status, unauthorized, "
        "invalid_json, invalid_payload), since the exporter started. Empty while nothing has failed.",
        f"{s('pulsatrix_last_error_timestamp_seconds')} * 1000",
        {"charger": "Charger", "endpoint": "Endpoint", "reason": "Reason"},
        w=24,
        h=5,
        unit="dateTimeAsIso",
        value="When",
        extra_defaults={"noValue": "no errors"},
    )

    d.row("Current session")
    d.stat(
        "Session start",
        "When the current (or last) session started.",
        "dateTimeAsIso",
        [Target(f"{s('pulsatrix_session_start_timestamp_seconds')} * 1000", "{{charger}}", instant=True)],
        w=6,
        options=stat_options(),
    )
    d.stat(
        "Session duration",
        "How long the current session has been running, or how long the last one lasted.",
        "s",
        [
            Target(
                f"({s('pulsatrix_session_end_timestamp_seconds')} - {s('pulsatrix_session_start_timestamp_seconds')})"
                f" or (time() - {s('pulsatrix_session_start_timestamp_seconds')})",
                "{{charger}}",
                instant=True,
            )
        ],
        w=6,
        options=stat_options(),
    )
    d.stat(
        "Session energy",
        "Energy of the current session (meter now − meter at start), or of the last one.",
        "kwatth",
        [Target(f"{s('pulsatrix_session_energy_joules')} / 3.6e6", "{{charger}}", instant=True)],
        w=6,
        options=stat_options(),
        extra_defaults={"decimals": 2},
    )
    d.stat(
        "Session end",
        "When the last session ended. Empty while a session is running.",
        "dateTimeAsIso",
        [Target(f"{s('pulsatrix_session_end_timestamp_seconds')} * 1000", "{{charger}}", instant=True)],
        w=6,
        extra_defaults={"noValue": "session running"},
    )
    d.label_table(
        "Session details",
        "Why the session started and stopped, who allocates its current (allocation source) and the phases it "
        "uses (1 per phase in use, L1 L2 L3).",
        s("pulsatrix_session_info"),
        {
            "charger": "Charger",
            "start_reason": "Start reason",
            "stop_reason": "Stop reason",
            "allocation_source": "Allocation source",
            "used_phases": "Used phases",
        },
        w=14,
        h=5,
    )
    d.label_table(
        "Charger",
        "What the charger reports about itself: controller name and power domain.",
        s("pulsatrix_charger_info"),
        {"charger": "Charger", "controller_name": "Controller", "power_domain": "Power domain"},
        w=10,
        h=5,
    )

    d.row("Limits set through the API")
    d.stat(
        "Charging enabled (API)",
        "Whether charging is enabled through the API. Disabled means an API client has stopped charging.",
        "none",
        [Target(s("pulsatrix_api_limit_enabled"), "{{charger}}", instant=True)],
        w=6,
        mappings=yes_no("enabled", "disabled", zero_color="red"),
        options=stat_options(color_mode="background"),
    )
    d.stat(
        "API limit active",
        "Whether a current or power limit is set through the API (otherwise the controller decides).",
        "none",
        [Target(s("pulsatrix_api_limit_active"), "{{charger}}", instant=True)],
        w=6,
        mappings=yes_no("limited", "not limited", one_color="orange", zero_color="green"),
        options=stat_options(color_mode="background"),
    )
    d.stat(
        "API limit timeout",
        "Time after which limits set through the API become invalid.",
        "s",
        [Target(s("pulsatrix_api_limit_timeout_seconds"), "{{charger}}", instant=True)],
        w=6,
        options=stat_options(),
    )
    d.stat(
        "API current limit",
        "The current limit set through the API. Empty when none is set.",
        "amp",
        [Target(s("pulsatrix_api_current_limit_amperes"), "{{charger}}", instant=True)],
        w=6,
        extra_defaults={"noValue": "none"},
    )
    d.add(
        "timeseries",
        "API limits over time",
        "Current and power limits set through the API over time (gaps: no limit set).",
        "amp",
        [
            Target(s("pulsatrix_api_current_limit_amperes"), "{{charger}} current limit"),
            Target(s("pulsatrix_api_power_limit_watts"), "{{charger}} power limit"),
        ],
        w=24,
        h=8,
        custom=timeseries_custom(fill=0),
        options=timeseries_options(LEGEND_TABLE),
        overrides=[
            {
                "matcher": {"id": "byRegexp", "options": ".* power limit$"},
                "properties": [{"id": "unit", "value": "watt"}, {"id": "custom.axisPlacement", "value": "right"}],
            }
        ],
        extra_defaults={"min": 0},
    )
    return d.to_json(variables(single_charger=True), links("pulsatrix-fleet", "Fleet overview"))


DASHBOARDS: Final = {"pulsatrix-fleet.json": fleet, "pulsatrix-charger.json": charger}


def render(dashboard: Json) -> str:
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"


def generate() -> dict[str, str]:
    """File name → JSON text of every dashboard."""
    return {name: render(build()) for name, build in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed dashboard is out of date")
    args = parser.parse_args(argv)
    stale = []
    for name, text in generate().items():
        path = DASHBOARDS_DIR / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(name)
        else:
            DASHBOARDS_DIR.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            sys.stdout.write(f"wrote {path}\n")
    if stale:
        sys.stderr.write(f"out of date (run grafana/build_dashboards.py): {', '.join(stale)}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
