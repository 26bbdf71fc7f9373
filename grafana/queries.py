"""Selectors, shared queries and template variables of both dashboards.

Every metric name comes from :mod:`exporter.catalogue` through :func:`m`, so renaming or removing a metric breaks the
build instead of leaving a dead panel behind. Every query goes through the ``datasource`` template variable.
"""

from __future__ import annotations

from typing import Final

from exporter import catalogue as metric
from exporter.catalogue import BY_NAME
from grafana.panels import DATASOURCE, Json
from grafana.vocabulary import CURRENCY, FAULT_STATES, FAULT_STATUS, ID, KNOWN_FOR

# The device series of the selected job(s), chargers and sites.
DEVICE_MATCHERS: Final = 'job=~"$job", charger=~"$charger", site=~"$site"'
# The detail dashboard's charger variable is single-select, and Grafana does not escape a single value for a regex:
# `charger=~"depot3.bay1"` would also match depot3-bay1. One charger is matched exactly.
ONE_CHARGER_MATCHERS: Final = 'job=~"$job", charger="$charger", site=~"$site"'
# The exporter processes are found by their own metric, whatever their job is called: the `exporter_job` variable
# lists the jobs that have pulsatrix_exporter_build_info (served on /metrics and /-/metrics, never on /probe).
# Exporter-process panels select `job=~"$exporter_job"`, never `$job`: in probe mode `$job` is the probe job, whose
# `up` counts chargers, not processes, and which carries neither build info nor process metrics.
EXPORTER_JOB_SELECTOR: Final = 'job=~"$exporter_job"'
# pulsatrix_scrape_errors_total exists only for (endpoint, reason) pairs that occurred: a healthy fleet has none.
# Panels by reason then show one 0 series named "none" instead of "No data".
NO_ERRORS: Final = ' or label_replace(vector(0), "reason", "none", "", "")'
JOULES_PER_KWH: Final = "3.6e6"


def m(name: str) -> str:
    """A metric name, checked against the catalogue (a renamed metric fails the build)."""
    if name not in BY_NAME:
        raise KeyError(f"{name} is not in exporter.catalogue")
    return name


def s(name: str, extra: str = "") -> str:
    """A selector of a per-charger metric, filtered by the dashboard's job, charger and site variables."""
    if not BY_NAME[m(name)].per_charger:
        raise ValueError(f"{name} has no charger label")
    return f"{name}{{{DEVICE_MATCHERS}{', ' + extra if extra else ''}}}"


def one(name: str, extra: str = "") -> str:
    """A selector of a per-charger metric of the one charger the detail dashboard shows (matched exactly)."""
    if not BY_NAME[m(name)].per_charger:
        raise ValueError(f"{name} has no charger label")
    return f"{name}{{{ONE_CHARGER_MATCHERS}{', ' + extra if extra else ''}}}"


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
    return f"{name}{{{DEVICE_MATCHERS}{', ' + extra if extra else ''}}}"


def in_states(name: str, label: str, states: str) -> str:
    """A per-charger state-set metric restricted to the states matching the regex ``states``."""
    return s(name, f'{label}=~"{states}"')


def faulted() -> str:
    """One series per charger that reports a fault (state, vehicle or controller status)."""
    state = in_states(metric.STATE, "state", FAULT_STATES)
    vehicle = in_states(metric.VEHICLE_STATUS, "status", FAULT_STATUS)
    controller = in_states(metric.CHARGE_CONTROLLER_STATUS, "status", FAULT_STATUS)
    return (
        f"(max by ({ID}, site) ({state} == 1)"
        f" or on ({ID}) max by ({ID}, site) ({vehicle} == 1)"
        f" or on ({ID}) max by ({ID}, site) ({controller} == 1))"
    )


def answering() -> str:
    """Chargers of which at least one endpoint answered in the last scrape (some data)."""
    return f"(max by ({ID}, site) ({s(metric.ENDPOINT_UP)}) == 1)"


def silent() -> str:
    """Chargers none of whose endpoints answered in the last scrape (no data)."""
    return f"(max by ({ID}, site) ({s(metric.ENDPOINT_UP)}) == 0)"


def unmonitored() -> str:
    """Chargers seen within KNOWN_FOR that have no current series: their exporter or their probe is down."""
    up = s(metric.UP)
    return f"(max by ({ID}, site) (last_over_time({up}[{KNOWN_FOR.promql}])) unless on ({ID}) {up})"


def count(expr: str) -> str:
    """How many series ``expr`` has, 0 (not "No data") when it has none."""
    return f"count({expr}) or vector(0)"


def kwh(expr: str) -> str:
    return f"{expr} / {JOULES_PER_KWH}"


# --- template variables and links --------------------------------------------------------------------------------


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
    up = m(metric.UP)
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
            **query_variable("exporter_job", "Exporter job", f"label_values({m(metric.BUILD_INFO)}, job)", None),
            "description": f"The job(s) whose targets are exporter processes: those with {metric.BUILD_INFO}.",
        },
    ]


def textbox_variable(name: str, label: str, description: str, default: str) -> Json:
    return {
        "name": name,
        "label": label,
        "description": description,
        "type": "textbox",
        "query": default,
        "current": {"text": default, "value": default},
        "options": [{"selected": True, "text": default, "value": default}],
        "hide": 0,
        "skipUrlSync": False,
    }


def cost_variables() -> list[Json]:
    """The price of one kWh and the currency it is in (shown with every cost)."""
    return [
        textbox_variable(
            "tariff", "Tariff per kWh", "Price of one kWh, for the cost panels (in the currency below).", "0.30"
        ),
        textbox_variable("currency", "Currency", "The currency of the tariff, shown with every cost.", CURRENCY),
    ]


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
