"""The metric catalogue: the one place where every exported metric name is defined.

Metric names are a contract (dashboards, alerts and users depend on them). :mod:`exporter.metrics` builds families
only from names in this table, the README's metric reference is generated from it
(``python -m exporter.catalogue``), and the tests check the README, the dashboards and the alert rules against it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Final, Literal

MetricType = Literal["gauge", "counter", "info"]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str  # the sample name as it appears in the exposition (counters end in _total, info in _info)
    type: MetricType
    help: str
    unit: str
    labels: tuple[str, ...]  # besides `charger` and the configured extra labels
    source: str  # where the value comes from
    per_charger: bool = True

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
    source: str,
    help_: str,
    labels: tuple[str, ...] = (),
    per_charger: bool = True,
) -> MetricSpec:
    return MetricSpec(name, type_, help_, unit, labels, source, per_charger)


CATALOGUE: Final[tuple[MetricSpec, ...]] = (
    # --- scrape health (built fresh every scrape) ---
    _m(
        "pulsatrix_up",
        "gauge",
        "1/0",
        "exporter",
        "1 if every endpoint of the charger answered with a usable reply in this scrape, else 0.",
    ),
    _m(
        "pulsatrix_endpoint_up",
        "gauge",
        "1/0",
        "exporter",
        "1 if this endpoint of the charger answered with a usable reply in this scrape, else 0.",
        ("endpoint",),
    ),
    _m(
        "pulsatrix_scrape_duration_seconds",
        "gauge",
        "seconds",
        "exporter",
        "Time it took to fetch all endpoints of the charger in this scrape.",
    ),
    _m(
        "pulsatrix_reading_age_seconds",
        "gauge",
        "seconds",
        "exporter",
        "Age of the reading exported in this scrape: 0 for a fresh poll, more when a reading younger than the "
        "charger's min_interval is served again instead of polling.",
    ),
    # --- configuration ---
    _m(
        "pulsatrix_charger_info",
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
        "configuration: hasPhaseRotation",
        "1 if the charger's phases are rotated by one phase.",
    ),
    _m(
        "pulsatrix_has_phase_shutoff",
        "gauge",
        "1/0",
        "configuration: hasPhaseStShutoff|hasPhaseShutoff|hasPhaseSTShutoff",
        "1 if the controller can switch off two phases (1-phase charging).",
    ),
    _m(
        "pulsatrix_has_phase_turnon",
        "gauge",
        "1/0",
        "configuration: hasPhaseSTTurnon",
        "1 if the controller can switch the phases back on during a session.",
    ),
    _m(
        "pulsatrix_effective_current_limit_amperes",
        "gauge",
        "amperes",
        "configuration (or transaction): effectiveAmperageLimit",
        "Absolute current limit of the charger (EVSE).",
    ),
    # --- transaction ---
    _m(
        "pulsatrix_state",
        "gauge",
        "1/0",
        "transaction: state",
        "Charging state: 1 for the current value, 0 for the other known values of the same firmware's set.",
        ("state",),
    ),
    _m(
        "pulsatrix_vehicle_status",
        "gauge",
        "1/0",
        "transaction: vehicleStatus",
        "IEC 61851 status of the vehicle: 1 for the current value, 0 for the other known values.",
        ("status",),
    ),
    _m(
        "pulsatrix_charge_controller_status",
        "gauge",
        "1/0",
        "transaction: chargeControllerStatus",
        "IEC 61851 status of the charge controller: 1 for the current value, 0 for the other known values.",
        ("status",),
    ),
    _m(
        "pulsatrix_session_active",
        "gauge",
        "1/0",
        "transaction: startedTime, endedTime",
        "1 while a charging session is running (started and not ended), 0 otherwise.",
    ),
    _m(
        "pulsatrix_session_start_timestamp_seconds",
        "gauge",
        "seconds (Unix time)",
        "transaction: startedTime",
        "Start of the current or last session. Absent while the device reports 0.",
    ),
    _m(
        "pulsatrix_session_end_timestamp_seconds",
        "gauge",
        "seconds (Unix time)",
        "transaction: endedTime",
        "End of the last session. Absent while the device reports 0 (session still running).",
    ),
    _m(
        "pulsatrix_session_energy_joules",
        "gauge",
        "joules",
        "transaction: meterStart, meterStop; charging: energyImported (kWh × 3.6e6)",
        "Energy of the current session (meter now − meter at start) or of the last one (meterStop − meterStart).",
    ),
    _m(
        "pulsatrix_session_info",
        "info",
        "1",
        "transaction: startReason, stopReason, allocationSourceName, usedPhasesSession",
        "Descriptive values of the current or last session; empty label when the device does not report it.",
        ("start_reason", "stop_reason", "allocation_source", "used_phases"),
    ),
    # --- charging ---
    _m(
        "pulsatrix_voltage_volts",
        "gauge",
        "volts",
        "charging: voltage[]",
        "Voltage per phase (only the phases the device reports).",
        ("phase",),
    ),
    _m(
        "pulsatrix_current_amperes",
        "gauge",
        "amperes",
        "charging: amperage[]",
        "Current per phase (only the phases the device reports).",
        ("phase",),
    ),
    _m(
        "pulsatrix_active_power_watts",
        "gauge",
        "watts",
        "charging: lastActivePower",
        "Last active power measured by the charger.",
    ),
    _m("pulsatrix_grid_frequency_hertz", "gauge", "hertz", "charging: frequency", "Grid frequency."),
    _m(
        "pulsatrix_energy_imported_joules_total",
        "counter",
        "joules",
        "charging: energyImported (kWh × 3.6e6)",
        "Energy meter reading of the charger.",
    ),
    _m(
        "pulsatrix_allocated_current_amperes",
        "gauge",
        "amperes",
        "charging: allocatedAmperage",
        "Current allocated to the charger by the load management.",
    ),
    _m(
        "pulsatrix_commanded_current_amperes",
        "gauge",
        "amperes",
        "charging: commandedAmperage",
        "Current commanded by the controller.",
    ),
    _m(
        "pulsatrix_available_current_amperes",
        "gauge",
        "amperes",
        "charging: availableAmperage",
        "Current available to the charger.",
    ),
    _m(
        "pulsatrix_signaled_current_amperes",
        "gauge",
        "amperes",
        "charging: signaledAmperage",
        "Current signaled to the vehicle (pilot PWM).",
    ),
    # --- limits ---
    _m(
        "pulsatrix_api_limit_enabled",
        "gauge",
        "1/0",
        "limits: enabled",
        "1 if charging is enabled through the API, 0 if it is disabled.",
    ),
    _m(
        "pulsatrix_api_limit_active",
        "gauge",
        "1/0",
        "limits: amperageLimit, powerLimit",
        "1 if a current or power limit is set through the API, 0 if both are NaN (the controller decides).",
    ),
    _m(
        "pulsatrix_api_current_limit_amperes",
        "gauge",
        "amperes",
        "limits: amperageLimit|setAmperageLimit",
        "Current limit set through the API. Absent while the device reports NaN (no limit set).",
    ),
    _m(
        "pulsatrix_api_power_limit_watts",
        "gauge",
        "watts",
        "limits: powerLimit|sePowerLimit",
        "Power limit set through the API. Absent while the device reports NaN (no limit set).",
    ),
    _m(
        "pulsatrix_api_limit_timeout_seconds",
        "gauge",
        "seconds",
        "limits: timeout|setTimeout (ms ÷ 1000)",
        "Time after which limits set through the API become invalid.",
    ),
    # --- the exporter's own long-lived metrics ---
    _m(
        "pulsatrix_scrape_errors_total",
        "counter",
        "errors",
        "exporter",
        "Failed endpoint fetches by reason: timeout, connect, http_status, unauthorized, invalid_json, "
        "invalid_payload.",
        ("endpoint", "reason"),
    ),
    _m(
        "pulsatrix_last_error_timestamp_seconds",
        "gauge",
        "seconds (Unix time)",
        "exporter",
        "When fetching this endpoint last failed for this reason; only reasons that occurred since the exporter "
        "started appear.",
        ("endpoint", "reason"),
    ),
    _m(
        "pulsatrix_invalid_values_total",
        "counter",
        "values",
        "exporter",
        "Values skipped because the device sent null, a wrong type, an infinite number or a negative meter "
        "reading (the rest of the reply is used).",
        ("endpoint", "field"),
    ),
    _m(
        "pulsatrix_exporter_build_info",
        "info",
        "1",
        "exporter",
        "Version of the exporter and of the Python it runs on.",
        ("version", "python_version"),
        per_charger=False,
    ),
    _m(
        "pulsatrix_exporter_config_last_reload_successful",
        "gauge",
        "1/0",
        "exporter",
        "1 if the last config reload (SIGHUP or POST /-/reload) succeeded, 0 if it was rejected (the previous "
        "config keeps running).",
        per_charger=False,
    ),
    _m(
        "pulsatrix_exporter_config_last_reload_success_timestamp_seconds",
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
