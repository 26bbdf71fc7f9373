"""Build the metric families of one scrape from parsed values and the exporter's health state.

Pure functions: given the results of one scrape they return fresh families; nothing here does I/O or keeps
state, so a charger that disappears leaves no stale series behind. Every name comes from
:mod:`exporter.catalogue`; a device value with a ``read`` source there is exported by one generic loop, the few
derived metrics (state sets, info metrics, session metrics) by the functions below.

One :class:`Family` per metric name per scrape, for the devices and for the exporter's own metrics (build info,
reload status) alike. A sample is two plain values, its label text (rendered by :mod:`exporter.scrape.labels`) and its
value (no dict, no object per sample), so that a scrape of thousands of chargers leaves the garbage collector
almost nothing to track. :mod:`exporter.scrape.exposition` writes the families out; nothing here knows an exposition
format.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import platform
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Final

from exporter import __version__
from exporter.catalogue import (
    API_CURRENT_LIMIT,
    API_LIMIT_ACTIVE,
    API_POWER_LIMIT,
    BUILD_INFO,
    BY_NAME,
    CATALOGUE,
    CHARGE_CONTROLLER_STATUS,
    CHARGER_INFO,
    ENDPOINT_UP,
    ENERGY_IMPORTED,
    FETCH_ERRORS,
    INVALID_VALUES,
    LAST_ERROR_TIME,
    POLL_DURATION,
    POLL_FAILURES,
    POLLS,
    READING_AGE,
    RELOAD_SUCCESS_TIME,
    RELOAD_SUCCESSFUL,
    SESSION_ACTIVE,
    SESSION_END,
    SESSION_ENERGY,
    SESSION_INFO,
    SESSION_METER_START,
    SESSION_START,
    STATE,
    UP,
    VEHICLE_STATUS,
    MetricSpec,
)
from exporter.config import ChargerConfig
from exporter.scrape.health import ExporterHealth
from exporter.scrape.labels import NO_LABELS, Labels, charger_labels
from exporter.scrape.parse import Value, Values
from exporter.scrape.results import ENDPOINTS, ChargerResult

log = logging.getLogger("exporter.metrics")

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

DIRECT: Final = tuple(spec for spec in CATALOGUE if spec.read is not None)
DIRECT_NAMES: Final = tuple(spec.name for spec in DIRECT)
_LAST_FIRST: Final = ENDPOINTS[::-1]


class Family:
    """All samples of one metric name in one scrape: label texts and values in two parallel lists."""

    __slots__ = ("label_texts", "spec", "values")

    def __init__(self, spec: MetricSpec) -> None:
        self.spec = spec
        self.label_texts: list[str] = []
        self.values: list[float] = []

    def __len__(self) -> int:
        return len(self.values)


class _ByName(dict[str, Family]):
    """Families by metric name, each created at its first sample: one dict look-up per sample, no call."""

    def __missing__(self, name: str) -> Family:
        family = self[name] = Family(BY_NAME[name])
        return family


class Families:
    """The families of one scrape, one per metric name; iterated in catalogue order."""

    __slots__ = ("by_name",)

    def __init__(self) -> None:
        self.by_name = _ByName()

    def family(self, name: str) -> Family:
        return self.by_name[name]

    def add(self, name: str, labels: Labels, value: float) -> None:
        family = self.by_name[name]
        family.label_texts.append(labels.base)
        family.values.append(value)

    def add_labelled(
        self,
        name: str,
        labels: Labels,
        names: tuple[str, ...],
        label_values: tuple[str, ...],
        value: float,
        stable: bool = True,  # False for label values the device chooses
    ) -> None:
        family = self.by_name[name]
        family.label_texts.append(labels.text(names, label_values, stable))
        family.values.append(value)

    def __iter__(self) -> Iterator[Family]:
        for spec in CATALOGUE:
            family = self.by_name.get(spec.name)
            if family is not None:
                yield family


def _merged(result: ChargerResult) -> Values:
    """The charger's values of all endpoints; a value found in two endpoints is taken from the first."""
    merged: Values = {}
    for endpoint in _LAST_FIRST:
        values = result.values(endpoint)
        if values:
            merged.update(values)  # a later endpoint's values first, so that the first endpoint's overwrite them
    return merged


def _number(values: Values, key: str) -> float | None:
    value = values.get(key)
    return value if isinstance(value, float) else None


def _text(values: Values, key: str) -> str | None:
    value = values.get(key)
    return value if isinstance(value, str) else None


def add_poll_health(fam: Families, result: ChargerResult, labels: Labels) -> None:
    fam.add(UP, labels, 1.0 if result.up else 0.0)
    family = fam.family(ENDPOINT_UP)
    family.label_texts.extend(labels.texts("endpoint", ENDPOINTS))
    outcomes = result.endpoints
    family.values.extend([1.0 if (o := outcomes.get(ep)) is not None and o.ok else 0.0 for ep in ENDPOINTS])
    fam.add(POLL_DURATION, labels, round(result.duration, 6))


def add_direct(fam: Families, labels: Labels, values: Values) -> None:
    """Every device value the catalogue exports as it is: one loop, driven by the catalogue's ``read`` sources."""
    by_name = fam.by_name
    base = labels.base
    # Appended here, not through Families.add: one family look-up per sample and no call (~20 samples a charger)
    for name in DIRECT_NAMES:
        value: Value | None = values.get(name)
        if value is None:
            continue
        if isinstance(value, tuple):
            for text, number in zip(labels.texts("phase", PHASES), value, strict=False):
                if number is not None:
                    family = by_name[name]
                    family.label_texts.append(text)
                    family.values.append(number)
            continue
        if isinstance(value, bool):
            number = 1.0 if value else 0.0
        elif isinstance(value, float) and not math.isnan(value):  # NaN: a limit that is not set
            number = value
        else:
            continue
        family = by_name[name]
        family.label_texts.append(base)
        family.values.append(number)


def _enum_index(sets: Sequence[Sequence[str]]) -> dict[str, tuple[tuple[str, ...], tuple[float, ...]]]:
    """Per known value of an enum: the first set that contains it, and that set's sample values (1 for it, 0 for
    the rest), computed once instead of per charger and scrape."""
    index: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {}
    for known in sets:
        for value in known:
            index.setdefault(value, (tuple(known), tuple(1.0 if candidate == value else 0.0 for candidate in known)))
    return index


STATE_INDEX: Final = _enum_index(STATE_SETS)
VEHICLE_INDEX: Final = _enum_index(VEHICLE_SETS)
CONTROLLER_INDEX: Final = _enum_index(CONTROLLER_SETS)


def _enum(
    fam: Families,
    name: str,
    labels: Labels,
    label: str,
    value: str | None,
    sets: Sequence[Sequence[str]],
    index: dict[str, tuple[tuple[str, ...], tuple[float, ...]]],
) -> None:
    if value is None:
        return
    family = fam.by_name[name]
    known = index.get(value)
    if known is not None:
        candidates, samples = known
        family.label_texts.extend(labels.texts(label, candidates))
        family.values.extend(samples)
        return
    candidates = tuple(sets[0])
    family.label_texts.extend(labels.texts(label, candidates))
    family.values.extend([0.0] * len(candidates))  # a value in no set is none of the default set's
    fam.add_labelled(name, labels, (label,), (value,), 1.0, stable=False)


def add_derived(fam: Families, labels: Labels, result: ChargerResult, values: Values) -> None:
    """The metrics computed from more than one value, or with a label taken from the device."""
    if result.values("configuration") is not None:
        fam.add_labelled(
            CHARGER_INFO,
            labels,
            ("power_domain", "controller_name"),
            (_text(values, "power_domain") or "", _text(values, "controller_name") or ""),
            1.0,
            stable=False,
        )
    _enum(fam, STATE, labels, "state", _text(values, "state"), STATE_SETS, STATE_INDEX)
    _enum(fam, VEHICLE_STATUS, labels, "status", _text(values, "vehicle_status"), VEHICLE_SETS, VEHICLE_INDEX)
    controller_status = _text(values, "charge_controller_status")
    _enum(fam, CHARGE_CONTROLLER_STATUS, labels, "status", controller_status, CONTROLLER_SETS, CONTROLLER_INDEX)
    started_time = _number(values, "started_time")
    ended_time = _number(values, "ended_time")
    started = started_time is not None and started_time > 0
    running = started and not ended_time
    if started_time is not None:
        fam.add(SESSION_ACTIVE, labels, 1.0 if running else 0.0)
    if started and started_time is not None:
        fam.add(SESSION_START, labels, started_time)
    if ended_time:
        fam.add(SESSION_END, labels, ended_time)
    meter_start = _number(values, SESSION_METER_START)
    if started and meter_start is not None:
        end = _number(values, ENERGY_IMPORTED if running else "meter_stop")
        if end is not None and end >= meter_start:
            fam.add(SESSION_ENERGY, labels, round(end - meter_start, 3))
    # Written out, not as generators over the keys: a generator each cost as much as the rest of this function
    start_reason, stop_reason = _text(values, "start_reason"), _text(values, "stop_reason")
    allocation_source, used_phases = _text(values, "allocation_source"), _text(values, "used_phases")
    if start_reason is not None or stop_reason is not None or allocation_source is not None or used_phases is not None:
        fam.add_labelled(
            SESSION_INFO,
            labels,
            ("start_reason", "stop_reason", "allocation_source", "used_phases"),
            (start_reason or "", stop_reason or "", allocation_source or "", used_phases or ""),
            1.0,
            stable=False,
        )
    current_limit, power_limit = values.get(API_CURRENT_LIMIT), values.get(API_POWER_LIMIT)
    # A limit is reported as a number or NaN; missing or null is unknown
    if isinstance(current_limit, float) or isinstance(power_limit, float):
        active = (isinstance(current_limit, float) and not math.isnan(current_limit)) or (
            isinstance(power_limit, float) and not math.isnan(power_limit)
        )
        fam.add(API_LIMIT_ACTIVE, labels, 1.0 if active else 0.0)


def device_families(
    results: Iterable[ChargerResult], on_error: Callable[[ChargerResult, Exception], None] | None = None
) -> list[Family]:
    """All per-scrape families (scrape health and device values) for these results. ``on_error`` is told about
    a charger whose readings could not be turned into metrics (an exporter bug; it counts and logs it)."""
    fam = Families()
    for result in results:
        labels = charger_labels(result.charger)
        add_poll_health(fam, result, labels)
        try:
            values = _merged(result)
            add_direct(fam, labels, values)
            add_derived(fam, labels, result, values)
        except Exception as exc:  # a bug for one charger's data must not turn every charger's scrape into a 500
            if on_error is None:
                log.exception("charger %s: cannot build metrics from its readings", result.charger.name)
            else:
                on_error(result, exc)
    return list(fam)


def health_families(health: ExporterHealth, chargers: Iterable[ChargerConfig]) -> list[Family]:
    """The long-lived counters of these chargers."""
    fam = Families()
    pair = ("endpoint", "reason")
    for charger in chargers:
        labels = charger_labels(charger)
        counters = health.counters[charger.name]
        fam.add(POLLS, labels, counters.polls)
        fam.add(POLL_FAILURES, labels, counters.failures)
        for key, count in counters.errors.items():
            fam.add_labelled(FETCH_ERRORS, labels, pair, key, count)
        for key, when in counters.last_error.items():
            fam.add_labelled(LAST_ERROR_TIME, labels, pair, key, when)
        for key, count in sorted(counters.invalid_values.items()):
            fam.add_labelled(INVALID_VALUES, labels, ("endpoint", "field"), key, count)
    return list(fam)


def reading_age_families(readings: Iterable[tuple[ChargerConfig, float]]) -> list[Family]:
    """How old each charger's reading is: 0 for a fresh poll, more when served again within its min_interval."""
    fam = Families()
    for charger, age in readings:
        fam.add(READING_AGE, charger_labels(charger), round(age, 3))
    return list(fam)


def reload_families(successful: bool, success_time: float) -> list[Family]:
    """The config reload status, named after Prometheus' own."""
    fam = Families()
    fam.add(RELOAD_SUCCESSFUL, NO_LABELS, 1.0 if successful else 0.0)
    fam.add(RELOAD_SUCCESS_TIME, NO_LABELS, success_time)
    return list(fam)


@functools.cache
def _build_info(event_loop: str) -> tuple[Family, ...]:
    fam = Families()
    fam.add_labelled(
        BUILD_INFO,
        NO_LABELS,
        ("version", "python_version", "event_loop"),
        (__version__, platform.python_version(), event_loop),
        1.0,
    )
    return tuple(fam)


def event_loop_name() -> str:
    """The running event loop's implementation: ``uvloop`` or ``asyncio`` (``none`` outside a loop)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return "none"
    return type(loop).__module__.partition(".")[0]


def build_info_families() -> list[Family]:
    """The build info: the same for the life of the process, so built once (nothing downstream changes a family)."""
    return list(_build_info(event_loop_name()))
