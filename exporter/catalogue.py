"""The metric catalogue: the one place where every exported metric name is defined.

Metric names are a contract (dashboards, alerts and users depend on them). :mod:`exporter.scrape.families` builds
families only from names in this table, the README's metric reference is generated from it
(``python -m exporter.catalogue``), and the tests check the README, the dashboards and the alert rules against it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Final, Literal

MetricType = Literal["gauge", "counter", "info"]
# How a device value is read: "number" (finite; null, a string or a boolean is skipped and counted), "meter" (a
# number that is never negative), "setting" (a number, or NaN for "not set"), "flag" (true/false only), "text" (a
# string only), "phases" (an array of numbers, one per phase: L1, L2, L3).
Kind = Literal["number", "meter", "setting", "flag", "text", "phases"]


@dataclass(frozen=True, slots=True)
class Source:
    """Where a device value comes from: the endpoints to look in (first found wins), the field names to try (the
    OpenAPI name first, then the variants other firmware sends), how to read it, and the factor to the metric's
    unit. A value whose conversion is not finite is skipped and counted like any other unusable value."""

    endpoints: tuple[str, ...]
    names: tuple[str, ...]
    kind: Kind
    scale: float = 1.0
    conversion: str = ""  # how the unit is converted, for the README (e.g. "kWh × 3.6e6")

    def describe(self) -> str:
        where = " (or ".join(self.endpoints) + ")" * (len(self.endpoints) - 1)
        names = "|".join(self.names) + ("[]" if self.kind == "phases" else "")
        return f"{where}: {names}" + (f" ({self.conversion})" if self.conversion else "")


def read(endpoint: str, *names: str, kind: Kind = "number", scale: float = 1.0, conversion: str = "") -> Source:
    endpoints = tuple(endpoint.split("|"))
    return Source(endpoints, names, kind, scale, conversion)


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str  # the sample name as it appears in the exposition (counters end in _total, info in _info)
    type: MetricType
    help: str
    unit: str
    labels: tuple[str, ...]  # besides `charger` and the configured extra labels
    source: str  # where the value comes from
    per_charger: bool = True
    read: Source | None = None  # set for a device value exported as it is (per phase for "phases"): one line each

    @property
    def family(self) -> str:
        """The name prometheus_client wants for the family (without _total / _info)."""
        if self.type == "counter":
            return self.name.removesuffix("_total")
        if self.type == "info":
            return self.name.removesuffix("_info")
        return self.name


def _m(
    name: str,
    type_: MetricType,
    unit: str,
    source: str | Source,
    help_: str,
    labels: tuple[str, ...] = (),
    per_charger: bool = True,
) -> MetricSpec:
    if isinstance(source, Source):
        labels = ("phase",) if source.kind == "phases" else labels
        return MetricSpec(name, type_, help_, unit, labels, source.describe(), per_charger, source)
    return MetricSpec(name, type_, help_, unit, labels, source, per_charger)


# Every name that code outside this table uses (the metric families, the dashboards, the alert rules, the report):
# each is written here once, and taken from here. A constant is named for what the metric means in the code's
# words: four metric names say "scrape" for what the exporter calls a poll of a charger (POLLS, POLL_FAILURES,
# POLL_DURATION) or an endpoint's fetch (FETCH_ERRORS); the names stay, as users' queries depend on them.
# Poll health, built fresh every scrape.
UP: Final = "pulsatrix_up"
ENDPOINT_UP: Final = "pulsatrix_endpoint_up"
POLL_DURATION: Final = "pulsatrix_scrape_duration_seconds"
READING_AGE: Final = "pulsatrix_reading_age_seconds"
# Device values.
CHARGER_INFO: Final = "pulsatrix_charger_info"
EFFECTIVE_CURRENT_LIMIT: Final = "pulsatrix_effective_current_limit_amperes"
STATE: Final = "pulsatrix_state"
VEHICLE_STATUS: Final = "pulsatrix_vehicle_status"
CHARGE_CONTROLLER_STATUS: Final = "pulsatrix_charge_controller_status"
SESSION_ACTIVE: Final = "pulsatrix_session_active"
SESSION_START: Final = "pulsatrix_session_start_timestamp_seconds"
SESSION_END: Final = "pulsatrix_session_end_timestamp_seconds"
SESSION_ENERGY: Final = "pulsatrix_session_energy_joules"
SESSION_METER_START: Final = "pulsatrix_session_meter_start_joules"
SESSION_INFO: Final = "pulsatrix_session_info"
VOLTAGE: Final = "pulsatrix_voltage_volts"
CURRENT: Final = "pulsatrix_current_amperes"
ACTIVE_POWER: Final = "pulsatrix_active_power_watts"
GRID_FREQUENCY: Final = "pulsatrix_grid_frequency_hertz"
ENERGY_IMPORTED: Final = "pulsatrix_energy_imported_joules_total"
ALLOCATED_CURRENT: Final = "pulsatrix_allocated_current_amperes"
COMMANDED_CURRENT: Final = "pulsatrix_commanded_current_amperes"
AVAILABLE_CURRENT: Final = "pulsatrix_available_current_amperes"
SIGNALED_CURRENT: Final = "pulsatrix_signaled_current_amperes"
API_LIMIT_ENABLED: Final = "pulsatrix_api_limit_enabled"
API_LIMIT_ACTIVE: Final = "pulsatrix_api_limit_active"
API_CURRENT_LIMIT: Final = "pulsatrix_api_current_limit_amperes"
API_POWER_LIMIT: Final = "pulsatrix_api_power_limit_watts"
API_LIMIT_TIMEOUT: Final = "pulsatrix_api_limit_timeout_seconds"
# The exporter's own, long-lived.
FETCH_ERRORS: Final = "pulsatrix_scrape_errors_total"
POLLS: Final = "pulsatrix_scrapes_total"
POLL_FAILURES: Final = "pulsatrix_scrape_failures_total"
LAST_ERROR_TIME: Final = "pulsatrix_last_error_timestamp_seconds"
INVALID_VALUES: Final = "pulsatrix_invalid_values_total"
BUILD_INFO: Final = "pulsatrix_exporter_build_info"
CONNECTIONS_REFUSED: Final = "pulsatrix_exporter_connections_refused_total"
RELOAD_SUCCESSFUL: Final = "pulsatrix_exporter_config_last_reload_successful"
RELOAD_SUCCESS_TIME: Final = "pulsatrix_exporter_config_last_reload_success_timestamp_seconds"


CATALOGUE: Final[tuple[MetricSpec, ...]] = (
    # --- poll health (built fresh every scrape) ---
    _m(
        UP,
        "gauge",
        "1/0",
        "exporter",
        "1 if every endpoint of the charger answered with a usable reply in the poll this scrape exports, else 0.",
    ),
    _m(
        ENDPOINT_UP,
        "gauge",
        "1/0",
        "exporter",
        "1 if this endpoint of the charger answered with a usable reply in the poll this scrape exports, else 0.",
        ("endpoint",),
    ),
    _m(
        POLL_DURATION,
        "gauge",
        "seconds",
        "exporter",
        "Time it took to fetch all endpoints of the charger in the poll this scrape exports.",
    ),
    _m(
        READING_AGE,
        "gauge",
        "seconds",
        "exporter",
        "Age of the reading exported in this scrape: 0 for a fresh poll, more when a reading younger than the "
        "charger's min_interval is served again instead of polling.",
    ),
    # --- configuration ---
    _m(
        CHARGER_INFO,
        "info",
        "1",
        "configuration: pdName|powerDomainName, ctrlrName|controllerName",
        "Names the charger reports: its power domain and its controller (charging point) name.",
        ("power_domain", "controller_name"),
    ),
    _m(
        "pulsatrix_has_phase_rotation",
        "gauge",
        "1/0",
        read("configuration", "hasPhaseRotation", kind="flag"),
        "1 if the charger's phases are rotated by one phase.",
    ),
    _m(
        "pulsatrix_has_phase_shutoff",
        "gauge",
        "1/0",
        read("configuration", "hasPhaseStShutoff", "hasPhaseShutoff", "hasPhaseSTShutoff", kind="flag"),
        "1 if the controller can switch off two phases (1-phase charging).",
    ),
    _m(
        "pulsatrix_has_phase_turnon",
        "gauge",
        "1/0",
        read("configuration", "hasPhaseSTTurnon", "hasPhaseStTurnon", "hasPhaseTurnon", kind="flag"),
        "1 if the controller can switch the phases back on during a session.",
    ),
    _m(
        EFFECTIVE_CURRENT_LIMIT,
        "gauge",
        "amperes",
        read("configuration|transaction", "effectiveAmperageLimit"),
        "Absolute current limit of the charger (EVSE).",
    ),
    # --- transaction ---
    _m(
        STATE,
        "gauge",
        "1/0",
        "transaction: state",
        "Charging state: 1 for the current value, 0 for the other known values of the same firmware's set.",
        ("state",),
    ),
    _m(
        VEHICLE_STATUS,
        "gauge",
        "1/0",
        "transaction: vehicleStatus",
        "IEC 61851 status of the vehicle: 1 for the current value, 0 for the other known values.",
        ("status",),
    ),
    _m(
        CHARGE_CONTROLLER_STATUS,
        "gauge",
        "1/0",
        "transaction: chargeControllerStatus",
        "IEC 61851 status of the charge controller: 1 for the current value, 0 for the other known values.",
        ("status",),
    ),
    _m(
        SESSION_ACTIVE,
        "gauge",
        "1/0",
        "transaction: startedTime, endedTime",
        "1 while a charging session is running (started and not ended), 0 otherwise.",
    ),
    _m(
        SESSION_START,
        "gauge",
        "seconds (Unix time)",
        "transaction: startedTime",
        "Start of the current or last session. Absent while the device reports 0.",
    ),
    _m(
        SESSION_END,
        "gauge",
        "seconds (Unix time)",
        "transaction: endedTime",
        "End of the last session. Absent while the device reports 0 (session still running).",
    ),
    _m(
        SESSION_ENERGY,
        "gauge",
        "joules",
        "transaction: meterStart, meterStop; charging: energyImported (kWh × 3.6e6)",
        "Energy of the current session (meter now − meter at start) or of the last one (meterStop − meterStart).",
    ),
    _m(
        SESSION_METER_START,
        "gauge",
        "joules",
        read("transaction", "meterStart", kind="meter", scale=3_600_000.0, conversion="kWh × 3.6e6"),
        "Meter reading at the start of the current or last session (0 before the first): with "
        "pulsatrix_session_energy_joules the session's meterStart and meterStop, as `report sessions` lists them.",
    ),
    _m(
        SESSION_INFO,
        "info",
        "1",
        "transaction: startReason, stopReason, allocationSourceName, usedPhasesSession",
        "Descriptive values of the current or last session; empty label when the device does not report it.",
        ("start_reason", "stop_reason", "allocation_source", "used_phases"),
    ),
    # --- charging ---
    _m(
        VOLTAGE,
        "gauge",
        "volts",
        read("charging", "voltage", kind="phases"),
        "Voltage per phase (only the phases the device reports).",
        ("phase",),
    ),
    _m(
        CURRENT,
        "gauge",
        "amperes",
        read("charging", "amperage", kind="phases"),
        "Current per phase (only the phases the device reports).",
        ("phase",),
    ),
    _m(
        ACTIVE_POWER,
        "gauge",
        "watts",
        read("charging", "lastActivePower"),
        "Last active power measured by the charger.",
    ),
    _m(GRID_FREQUENCY, "gauge", "hertz", read("charging", "frequency"), "Grid frequency."),
    _m(
        ENERGY_IMPORTED,
        "counter",
        "joules",
        read("charging", "energyImported", kind="meter", scale=3_600_000.0, conversion="kWh × 3.6e6"),
        "Energy meter reading of the charger.",
    ),
    _m(
        ALLOCATED_CURRENT,
        "gauge",
        "amperes",
        read("charging", "allocatedAmperage"),
        "Current allocated to the charger by the load management.",
    ),
    _m(
        COMMANDED_CURRENT,
        "gauge",
        "amperes",
        read("charging", "commandedAmperage"),
        "Current commanded by the controller.",
    ),
    _m(
        AVAILABLE_CURRENT,
        "gauge",
        "amperes",
        read("charging", "availableAmperage"),
        "Current available to the charger.",
    ),
    _m(
        SIGNALED_CURRENT,
        "gauge",
        "amperes",
        read("charging", "signaledAmperage"),
        "Current signaled to the vehicle (pilot PWM).",
    ),
    # --- limits ---
    _m(
        API_LIMIT_ENABLED,
        "gauge",
        "1/0",
        read("limits", "enabled", kind="flag"),
        "1 if charging is enabled through the API, 0 if it is disabled.",
    ),
    _m(
        API_LIMIT_ACTIVE,
        "gauge",
        "1/0",
        "limits: amperageLimit, powerLimit",
        "1 if a current or power limit is set through the API, 0 if both are NaN (the controller decides).",
    ),
    _m(
        API_CURRENT_LIMIT,
        "gauge",
        "amperes",
        read("limits", "amperageLimit", "setAmperageLimit", kind="setting"),
        "Current limit set through the API. Absent while the device reports NaN (no limit set).",
    ),
    _m(
        API_POWER_LIMIT,
        "gauge",
        "watts",
        read("limits", "powerLimit", "sePowerLimit", "setPowerLimit", kind="setting"),
        "Power limit set through the API. Absent while the device reports NaN (no limit set).",
    ),
    _m(
        API_LIMIT_TIMEOUT,
        "gauge",
        "seconds",
        read("limits", "timeout", "setTimeout", scale=0.001, conversion="ms ÷ 1000"),
        "Time after which limits set through the API become invalid.",
    ),
    _m(
        "pulsatrix_api_one_phase_limit",
        "gauge",
        "1/0",
        read("limits", "setOnePhaseLimit", kind="flag"),
        "1 if charging is limited to one phase through the API (a field of the prose docs, not in OpenAPI 1.0.11).",
    ),
    _m(
        "pulsatrix_api_phase_rotation",
        "gauge",
        "1/0",
        read("limits", "setPhaseRotation", kind="flag"),
        "1 if phase rotation is switched on through the API (a field of the prose docs, not in OpenAPI 1.0.11).",
    ),
    # --- the exporter's own long-lived metrics ---
    _m(
        FETCH_ERRORS,
        "counter",
        "errors",
        "exporter",
        "Failed endpoint fetches by reason: timeout, connect, http_status, unauthorized, invalid_json, "
        "invalid_payload, exporter_error (an exporter bug), exporter_fds (the exporter ran out of file "
        "descriptors), throttled (no polling slot before the deadline), scrape_timeout (the scrape's timeout ran "
        "out before the charger's own). A series appears with the first error of "
        "its endpoint and reason; "
        "alert on pulsatrix_scrape_failures_total, which starts at 0.",
        ("endpoint", "reason"),
    ),
    _m(
        POLLS,
        "counter",
        "polls",
        "exporter",
        "Polls of the charger (scrapes that join a poll in flight or are served a reading younger than min_interval "
        "add none); starts at 0.",
    ),
    _m(
        POLL_FAILURES,
        "counter",
        "polls",
        "exporter",
        "Polls of the charger in which at least one endpoint failed; starts at 0, so increase() sees the first.",
    ),
    _m(
        LAST_ERROR_TIME,
        "gauge",
        "seconds (Unix time)",
        "exporter",
        "When fetching this endpoint last failed for this reason; only reasons that occurred since the exporter "
        "started appear.",
        ("endpoint", "reason"),
    ),
    _m(
        INVALID_VALUES,
        "counter",
        "values",
        "exporter",
        "Values skipped because the device sent null, a wrong type (a number for a string, 0/1 for a boolean), "
        "an infinite number, a value whose unit conversion overflows, or a negative meter reading (the rest of "
        "the reply is used).",
        ("endpoint", "field"),
    ),
    _m(
        BUILD_INFO,
        "info",
        "1",
        "exporter",
        "Version of the exporter and of the Python it runs on, and the event loop it runs on (uvloop or asyncio).",
        ("version", "python_version", "event_loop"),
        per_charger=False,
    ),
    _m(
        CONNECTIONS_REFUSED,
        "counter",
        "connections",
        "exporter",
        "Connections to the exporter's port refused at the cap (--web.max-connections) because every connection "
        "was busy and their client address held its share, or busy ones closed to make room for another address "
        "(each address gets a share of the cap; an IPv6 one counts by its /64). Rising while your scrapers are "
        "the only clients: raise --web.max-connections.",
        per_charger=False,
    ),
    _m(
        RELOAD_SUCCESSFUL,
        "gauge",
        "1/0",
        "exporter",
        "1 if the last config reload (SIGHUP or POST /-/reload) succeeded, 0 if it was rejected (the previous "
        "config keeps running).",
        per_charger=False,
    ),
    _m(
        RELOAD_SUCCESS_TIME,
        "gauge",
        "seconds (Unix time)",
        "exporter",
        "When the config was last loaded successfully (at start or by a reload).",
        per_charger=False,
    ),
)

BY_NAME: Final = {spec.name: spec for spec in CATALOGUE}


def markdown_table() -> str:
    rows = [
        "| metric | type | unit | labels | source | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for spec in CATALOGUE:
        labels = [f"`{x}`" for x in (("charger",) if spec.per_charger else ()) + spec.labels]
        if spec.per_charger:
            labels.insert(1, "*extra labels*")
        rows.append(
            f"| `{spec.name}` | {spec.type} | {spec.unit} | {', '.join(labels)} | {spec.source} | {spec.help} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    sys.stdout.write(markdown_table() + "\n")
