"""Build Prometheus metric families from typed readings and the exporter's health state.

Pure functions: given the results of one scrape they return fresh families; nothing here does I/O or keeps
state, so a charger that disappears leaves no stale series behind. Every name comes from
:mod:`exporter.catalogue`.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Final

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.catalogue import BY_NAME, CATALOGUE
from exporter.config import ChargerConfig
from exporter.health import ExporterHealth
from exporter.model import ENDPOINTS, ChargerResult
from exporter.parse import Charging, Configuration, Limits, Transaction

log = logging.getLogger("exporter.metrics")

KWH_TO_JOULES: Final = 3_600_000.0
PHASES: Final = ("L1", "L2", "L3")

# Known values per enum, one tuple per firmware generation / document. The set that contains the current value
# is exported (1 for the value, 0 for the rest) so that series stay continuous; an unknown value is exported with 1
# next to the zeros of the field's default set (the first tuple).
STATE_SETS: Final = (
    (
        "Idle",
        "EVConnected",
        "SuspendedEV",
        "SuspendedEVSE",
        "Charging",
        "Finishing",
        "Reserved",
        "Unavailable",
        "Faulted",
    ),
    (
        "IDLE",
        "AWAITING_START",
        "AWAITING_AUTHORIZATION",
        "STARTING",
        "SUSPENDED_EVSE",
        "SUSPENDED_EV",
        "CHARGING",
        "FAILED",
        "STOPPED",
        "LINGERING",
        "COMPLETED",
    ),
)
IEC_LETTERS: Final = ("A", "B", "C", "D", "E", "F", "S", "R")
IEC_CODES: Final = ("A1", "B1", "C1", "D1", "E1", "F1", "S1", "R1", "B2", "C2", "D2", "UNKNOWN")
VEHICLE_SETS: Final = (IEC_CODES, IEC_LETTERS)  # OpenAPI: two-character codes for the vehicle
CONTROLLER_SETS: Final = (IEC_LETTERS, IEC_CODES)  # OpenAPI: single letters for the controller


class Families:
    """Collects samples per metric name; yields the families in catalogue order."""

    def __init__(self) -> None:
        self._families: dict[str, Metric] = {}

    def add(self, name: str, labels: Mapping[str, str], value: float) -> None:
        spec = BY_NAME[name]
        family = self._families.get(name)
        if family is None:
            family = Metric(spec.family, spec.help, spec.type)
            self._families[name] = family
        family.add_sample(name, dict(labels), float(value))

    def merge(self, other: Families) -> None:
        for name, family in other._families.items():
            mine = self._families.get(name)
            if mine is None:
                self._families[name] = family
            else:
                mine.samples.extend(family.samples)

    def __iter__(self) -> Iterator[Metric]:
        for spec in CATALOGUE:
            if spec.name in self._families:
                yield self._families[spec.name]


def base_labels(charger: ChargerConfig) -> dict[str, str]:
    return {"charger": charger.name, **dict(charger.labels)}


def _kwh_to_joules(kwh: float) -> float:
    return round(kwh * KWH_TO_JOULES, 3)


def _flag(fam: Families, name: str, labels: Mapping[str, str], value: bool | None) -> None:
    if value is not None:
        fam.add(name, labels, 1.0 if value else 0.0)


def _value(fam: Families, name: str, labels: Mapping[str, str], value: float | None) -> None:
    if value is not None:
        fam.add(name, labels, value)


def _enum(
    fam: Families,
    name: str,
    labels: Mapping[str, str],
    label: str,
    value: str | None,
    sets: Sequence[Sequence[str]],
) -> None:
    if value is None:
        return
    known = next((s for s in sets if value in s), None)
    for candidate in known or sets[0]:
        fam.add(name, {**labels, label: candidate}, 1.0 if candidate == value else 0.0)
    if known is None:
        fam.add(name, {**labels, label: value}, 1.0)


def add_scrape_health(fam: Families, result: ChargerResult) -> None:
    labels = base_labels(result.charger)
    fam.add("pulsatrix_up", labels, 1.0 if result.up else 0.0)
    for endpoint in ENDPOINTS:
        outcome = result.endpoints.get(endpoint)
        fam.add("pulsatrix_endpoint_up", {**labels, "endpoint": endpoint}, 1.0 if outcome and outcome.ok else 0.0)
    fam.add("pulsatrix_scrape_duration_seconds", labels, round(result.duration, 6))


def add_configuration(
    fam: Families, labels: Mapping[str, str], conf: Configuration | None, tx: Transaction | None
) -> None:
    if conf is not None:
        fam.add(
            "pulsatrix_charger_info",
            {
                **labels,
                "power_domain": conf.power_domain or "",
                "controller_name": conf.controller_name or "",
            },
            1.0,
        )
        _flag(fam, "pulsatrix_has_phase_rotation", labels, conf.has_phase_rotation)
        _flag(fam, "pulsatrix_has_phase_shutoff", labels, conf.has_phase_shutoff)
        _flag(fam, "pulsatrix_has_phase_turnon", labels, conf.has_phase_turnon)
    limit = conf.effective_current_limit if conf is not None else None
    if limit is None and tx is not None:
        limit = tx.effective_current_limit
    _value(fam, "pulsatrix_effective_current_limit_amperes", labels, limit)


def add_transaction(fam: Families, labels: Mapping[str, str], tx: Transaction, charging: Charging | None) -> None:
    _enum(fam, "pulsatrix_state", labels, "state", tx.state, STATE_SETS)
    _enum(fam, "pulsatrix_vehicle_status", labels, "status", tx.vehicle_status, VEHICLE_SETS)
    _enum(
        fam,
        "pulsatrix_charge_controller_status",
        labels,
        "status",
        tx.charge_controller_status,
        CONTROLLER_SETS,
    )
    started = tx.started_time is not None and tx.started_time > 0
    running = started and not tx.ended_time
    if tx.started_time is not None:
        fam.add("pulsatrix_session_active", labels, 1.0 if running else 0.0)
    if started:
        _value(fam, "pulsatrix_session_start_timestamp_seconds", labels, tx.started_time)
    if tx.ended_time:
        fam.add("pulsatrix_session_end_timestamp_seconds", labels, tx.ended_time)
    if started and tx.meter_start is not None:
        end = (charging.energy_imported if charging is not None else None) if running else tx.meter_stop
        if end is not None and end >= tx.meter_start:
            fam.add("pulsatrix_session_energy_joules", labels, _kwh_to_joules(end - tx.meter_start))
    if any(v is not None for v in (tx.start_reason, tx.stop_reason, tx.allocation_source, tx.used_phases)):
        fam.add(
            "pulsatrix_session_info",
            {
                **labels,
                "start_reason": tx.start_reason or "",
                "stop_reason": tx.stop_reason or "",
                "allocation_source": tx.allocation_source or "",
                "used_phases": tx.used_phases or "",
            },
            1.0,
        )


def add_charging(fam: Families, labels: Mapping[str, str], ch: Charging) -> None:
    for phase, volts in zip(PHASES, ch.voltages, strict=False):
        _value(fam, "pulsatrix_voltage_volts", {**labels, "phase": phase}, volts)
    for phase, amps in zip(PHASES, ch.currents, strict=False):
        _value(fam, "pulsatrix_current_amperes", {**labels, "phase": phase}, amps)
    _value(fam, "pulsatrix_active_power_watts", labels, ch.active_power)
    _value(fam, "pulsatrix_grid_frequency_hertz", labels, ch.frequency)
    if ch.energy_imported is not None:
        fam.add("pulsatrix_energy_imported_joules_total", labels, _kwh_to_joules(ch.energy_imported))
    _value(fam, "pulsatrix_allocated_current_amperes", labels, ch.allocated_current)
    _value(fam, "pulsatrix_commanded_current_amperes", labels, ch.commanded_current)
    _value(fam, "pulsatrix_available_current_amperes", labels, ch.available_current)
    _value(fam, "pulsatrix_signaled_current_amperes", labels, ch.signaled_current)


def add_limits(fam: Families, labels: Mapping[str, str], lim: Limits) -> None:
    _flag(fam, "pulsatrix_api_limit_enabled", labels, lim.enabled)
    if lim.limits_reported:  # unknown (fields missing or null) is not the same as "no limit set"
        active = lim.current_limit is not None or lim.power_limit is not None
        fam.add("pulsatrix_api_limit_active", labels, 1.0 if active else 0.0)
    _value(fam, "pulsatrix_api_current_limit_amperes", labels, lim.current_limit)
    _value(fam, "pulsatrix_api_power_limit_watts", labels, lim.power_limit)
    if lim.timeout_ms is not None:
        fam.add("pulsatrix_api_limit_timeout_seconds", labels, lim.timeout_ms / 1000.0)


def add_device(fam: Families, result: ChargerResult) -> None:
    labels = base_labels(result.charger)
    conf: Configuration | None = result.reading("configuration")
    tx: Transaction | None = result.reading("transaction")
    charging: Charging | None = result.reading("charging")
    limits: Limits | None = result.reading("limits")
    add_configuration(fam, labels, conf, tx)
    if tx is not None:
        add_transaction(fam, labels, tx, charging)
    if charging is not None:
        add_charging(fam, labels, charging)
    if limits is not None:
        add_limits(fam, labels, limits)


def device_families(
    results: Iterable[ChargerResult], on_error: Callable[[ChargerResult, Exception], None] | None = None
) -> list[Metric]:
    """All per-scrape families (scrape health and device values) for these results. ``on_error`` is told about
    a charger whose readings could not be turned into metrics (an exporter bug; it counts and logs it)."""
    fam = Families()
    for result in results:
        add_scrape_health(fam, result)
        device = Families()
        try:
            add_device(device, result)
        except Exception as exc:  # a bug for one charger's data must not turn every charger's scrape into a 500
            if on_error is None:
                log.exception("charger %s: cannot build metrics from its readings", result.charger.name)
            else:
                on_error(result, exc)
            continue
        fam.merge(device)
    return list(fam)


def health_families(health: ExporterHealth, chargers: Iterable[ChargerConfig]) -> list[Metric]:
    """The long-lived counters of these chargers."""
    fam = Families()
    for charger in chargers:
        labels = base_labels(charger)
        counters = health.counters[charger.name]
        for (endpoint, reason), count in counters.errors.items():
            fam.add("pulsatrix_scrape_errors_total", {**labels, "endpoint": endpoint, "reason": reason}, count)
        for (endpoint, reason), when in counters.last_error.items():
            fam.add("pulsatrix_last_error_timestamp_seconds", {**labels, "endpoint": endpoint, "reason": reason}, when)
        for (endpoint, field), count in sorted(counters.invalid_values.items()):
            fam.add("pulsatrix_invalid_values_total", {**labels, "endpoint": endpoint, "field": field}, count)
    return list(fam)


def reading_age_families(readings: Iterable[tuple[ChargerConfig, float]]) -> list[Metric]:
    """How old each charger's reading is: 0 for a fresh poll, more when served again within its min_interval."""
    fam = Families()
    for charger, age in readings:
        fam.add("pulsatrix_reading_age_seconds", base_labels(charger), round(age, 3))
    return list(fam)


def reload_families(successful: bool, success_time: float) -> list[Metric]:
    """The config reload status, named after Prometheus' own."""
    fam = Families()
    fam.add("pulsatrix_exporter_config_last_reload_successful", {}, 1.0 if successful else 0.0)
    fam.add("pulsatrix_exporter_config_last_reload_success_timestamp_seconds", {}, success_time)
    return list(fam)


def build_info_families() -> list[Metric]:
    fam = Families()
    fam.add(
        "pulsatrix_exporter_build_info",
        {"version": __version__, "python_version": platform.python_version()},
        1.0,
    )
    return list(fam)


class StaticCollector(Collector):
    """Serves families that were built before ``collect()`` is called: no I/O and no work at collect time."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return iter(self._families)
