"""Turn the raw bodies of the four device endpoints into typed readings.

Pure functions, no I/O. What real devices send differs from the vendor's OpenAPI file (see
``shared/reference/DEVICE-API.md``); the parsers accept every documented variant:

* field-name variants (``pdName``/``powerDomainName``, ``ctrlrName``/``controllerName``, the phase-switch flags),
  and fields that moved between ``configuration`` and ``transaction``;
* the non-standard ``NaN`` literal (and ``nan``/``inf`` as C firmware prints them);
* ``null`` and wrong-typed values: that one value is skipped and reported as a :class:`Problem`, the rest of the
  payload is used; missing fields are skipped silently (older firmware simply does not have them);
* one-, two- or three-phase arrays, and ``{}`` where an array is documented;
* enum values no document lists: kept as they are;
* the WebSocket envelope ``{"topic": ..., "message": {...}}``.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from exporter.model import (
    ChargerFetch,
    ChargerResult,
    EndpointFetch,
    EndpointResult,
    Parsed,
    Problem,
    Reason,
)

MAX_PHASES: Final = 3
MAX_LABEL_LEN: Final = 64

log = logging.getLogger("exporter.parse")


class PayloadError(Exception):
    """The body as a whole is unusable. ``reason`` is ``invalid_json`` or ``invalid_payload``."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class Configuration:
    power_domain: str | None = None
    controller_name: str | None = None
    effective_current_limit: float | None = None  # A
    has_phase_rotation: bool | None = None
    has_phase_shutoff: bool | None = None
    has_phase_turnon: bool | None = None


@dataclass(frozen=True, slots=True)
class Transaction:
    state: str | None = None
    started_time: float | None = None  # Unix seconds; 0 = no session
    ended_time: float | None = None  # Unix seconds; 0 = session still running
    meter_start: float | None = None  # kWh
    meter_stop: float | None = None  # kWh
    vehicle_status: str | None = None
    charge_controller_status: str | None = None
    used_phases: str | None = None
    start_reason: str | None = None
    stop_reason: str | None = None
    allocation_source: str | None = None
    effective_current_limit: float | None = None  # A; some firmware reports it here


@dataclass(frozen=True, slots=True)
class Charging:
    voltages: tuple[float | None, ...] = ()  # V per phase, index 0 = L1
    currents: tuple[float | None, ...] = ()  # A per phase
    allocated_current: float | None = None  # A
    commanded_current: float | None = None
    available_current: float | None = None
    signaled_current: float | None = None
    frequency: float | None = None  # Hz
    energy_imported: float | None = None  # kWh meter reading
    active_power: float | None = None  # W


@dataclass(frozen=True, slots=True)
class Limits:
    enabled: bool | None = None
    current_limit: float | None = None  # A; None = NaN = not set
    power_limit: float | None = None  # W; None = NaN = not set
    timeout_ms: float | None = None
    limits_reported: bool = False  # the device reported a current or power limit (a number or NaN)


# Bare tokens C firmware prints for non-finite floats, where a JSON value may stand. Strings are matched (and kept)
# first, so that "nan" inside a string value is never touched.
_NONFINITE_RE = re.compile(r'"(?:[^"\\]|\\.)*"|([\[:,]\s*)(-?nan|-?inf(?:inity)?)(?=\s*[,\]}])', re.IGNORECASE)


def _nonfinite_to_json(match: re.Match[str]) -> str:
    if match.group(2) is None:
        return match.group(0)  # a string literal
    token = match.group(2).lower()
    if "nan" in token:
        return match.group(1) + "NaN"
    return match.group(1) + ("-Infinity" if token.startswith("-") else "Infinity")


def decode_body(body: bytes) -> dict[str, Any]:
    """Decode an endpoint's body to a JSON object, accepting the ``NaN`` literals devices send."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PayloadError(Reason.INVALID_JSON, f"body is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise PayloadError(Reason.INVALID_JSON, "body is nested too deeply") from None
    except json.JSONDecodeError as first:
        repaired = _NONFINITE_RE.sub(_nonfinite_to_json, text)
        try:
            data = json.loads(repaired) if repaired != text else None
        except (ValueError, RecursionError):
            data = None
        if data is None:
            raise PayloadError(
                Reason.INVALID_JSON, f"body is not JSON: {first.msg} at line {first.lineno} column {first.colno}"
            ) from None
    except ValueError as exc:  # e.g. an integer literal longer than Python converts
        raise PayloadError(Reason.INVALID_JSON, f"body is not usable JSON: {str(exc)[:80]}") from None
    if isinstance(data, dict) and isinstance(data.get("message"), dict) and "topic" in data:
        data = data["message"]  # WebSocket envelope
    if not isinstance(data, dict):
        raise PayloadError(Reason.INVALID_PAYLOAD, f"expected a JSON object, got {_json_type(data)}")
    return data


class _Fields:
    """Reads typed values out of one JSON object, collecting a Problem for every unusable value."""

    def __init__(self, obj: Mapping[str, Any]) -> None:
        self.obj = obj
        self.problems: list[Problem] = []

    def _find(self, names: tuple[str, ...]) -> tuple[str, Any] | None:
        for name in names:
            if name in self.obj:
                return name, self.obj[name]
        return None

    def problem(self, name: str, message: str) -> None:
        self.problems.append(Problem(name, message))

    def number(self, *names: str) -> float | None:
        found = self._find(names)
        return None if found is None else self._number(found[0], found[1])

    def reported(self, *names: str) -> bool:
        """True if one of the fields holds a number or NaN (as opposed to missing, null or a wrong type)."""
        found = self._find(names)
        if found is None:
            return False
        value = found[1]
        if isinstance(value, str):
            return value.strip().lower() == "nan"
        return isinstance(value, int | float) and not isinstance(value, bool)

    def meter(self, *names: str) -> float | None:
        """A meter reading in kWh: a number that is never negative."""
        found = self._find(names)
        if found is None:
            return None
        value = self._number(*found)
        if value is not None and value < 0:
            self.problem(found[0], "negative meter reading")
            return None
        return value

    def _number(self, name: str, value: Any) -> float | None:
        if isinstance(value, str) and value.strip().lower() == "nan":
            return None
        if value is None:
            self.problem(name, "null")
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problem(name, f"expected a number, got {_json_type(value)}")
            return None
        try:
            number = float(value)
        except OverflowError:
            self.problem(name, "number out of range")
            return None
        if math.isnan(number):
            return None  # NaN = "not set"
        if math.isinf(number):
            self.problem(name, "infinite")
            return None
        return number

    def text(self, *names: str) -> str | None:
        found = self._find(names)
        if found is None:
            return None
        name, value = found
        if value is None:
            self.problem(name, "null")
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            self.problem(name, f"expected a string, got {_json_type(value)}")
            return None
        text = str(value).strip()
        if not text:
            return None
        if len(text) > MAX_LABEL_LEN or not text.isprintable():
            self.problem(name, f"string is longer than {MAX_LABEL_LEN} characters or not printable")
            return None
        return text

    def flag(self, *names: str) -> bool | None:
        found = self._find(names)
        if found is None:
            return None
        name, value = found
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        self.problem(name, f"expected true or false, got {_json_type(value)}")
        return None

    def phases(self, name: str) -> tuple[float | None, ...]:
        if name not in self.obj:
            return ()
        value = self.obj[name]
        if isinstance(value, dict) and not value:
            return ()  # documented quirk: {} where an array is expected
        if not isinstance(value, list):
            self.problem(name, f"expected an array, got {_json_type(value)}")
            return ()
        if len(value) > MAX_PHASES:
            self.problem(name, f"{len(value)} entries, only the first {MAX_PHASES} are phases")
        return tuple(self._number(name, item) for item in value[:MAX_PHASES])


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def parse_configuration(obj: Mapping[str, Any]) -> Parsed[Configuration]:
    f = _Fields(obj)
    reading = Configuration(
        power_domain=f.text("pdName", "powerDomainName"),
        controller_name=f.text("ctrlrName", "controllerName"),
        effective_current_limit=f.number("effectiveAmperageLimit"),
        has_phase_rotation=f.flag("hasPhaseRotation"),
        has_phase_shutoff=f.flag("hasPhaseStShutoff", "hasPhaseShutoff", "hasPhaseSTShutoff"),
        has_phase_turnon=f.flag("hasPhaseSTTurnon", "hasPhaseStTurnon", "hasPhaseTurnon"),
    )
    return Parsed(reading, tuple(f.problems))


def parse_transaction(obj: Mapping[str, Any]) -> Parsed[Transaction]:
    f = _Fields(obj)
    used_phases = f.text("usedPhasesSession")
    if used_phases is not None and used_phases.isdigit() and isinstance(obj.get("usedPhasesSession"), int):
        used_phases = used_phases.zfill(3)  # sent as a JSON number, e.g. 11 for "011"
    reading = Transaction(
        state=f.text("state"),
        started_time=f.number("startedTime"),
        ended_time=f.number("endedTime"),
        meter_start=f.meter("meterStart"),
        meter_stop=f.meter("meterStop"),
        vehicle_status=f.text("vehicleStatus"),
        charge_controller_status=f.text("chargeControllerStatus"),
        used_phases=used_phases,
        start_reason=f.text("startReason"),
        stop_reason=f.text("stopReason"),
        allocation_source=f.text("allocationSourceName", "allocationSource"),
        effective_current_limit=f.number("effectiveAmperageLimit"),
    )
    return Parsed(reading, tuple(f.problems))


def parse_charging(obj: Mapping[str, Any]) -> Parsed[Charging]:
    f = _Fields(obj)
    reading = Charging(
        voltages=f.phases("voltage"),
        currents=f.phases("amperage"),
        allocated_current=f.number("allocatedAmperage"),
        commanded_current=f.number("commandedAmperage"),
        available_current=f.number("availableAmperage"),
        signaled_current=f.number("signaledAmperage"),
        frequency=f.number("frequency"),
        energy_imported=f.meter("energyImported"),
        active_power=f.number("lastActivePower"),
    )
    return Parsed(reading, tuple(f.problems))


def parse_limits(obj: Mapping[str, Any]) -> Parsed[Limits]:
    f = _Fields(obj)
    current_names = ("amperageLimit", "setAmperageLimit")
    power_names = ("powerLimit", "sePowerLimit", "setPowerLimit")
    reading = Limits(
        enabled=f.flag("enabled"),
        current_limit=f.number(*current_names),
        power_limit=f.number(*power_names),
        timeout_ms=f.number("timeout", "setTimeout"),
        limits_reported=f.reported(*current_names) or f.reported(*power_names),
    )
    return Parsed(reading, tuple(f.problems))


PARSERS: Final[Mapping[str, Callable[[Mapping[str, Any]], Parsed[Any]]]] = {
    "configuration": parse_configuration,
    "transaction": parse_transaction,
    "charging": parse_charging,
    "limits": parse_limits,
}


def parse_endpoint(endpoint: str, body: bytes) -> Parsed[Any]:
    """Decode and parse one endpoint's body; raise :class:`PayloadError` if the body is unusable as a whole."""
    return PARSERS[endpoint](decode_body(body))


def parse_fetched(fetched: EndpointFetch) -> EndpointResult:
    """One endpoint's fetch outcome → its reading, or the reason it is unusable. Never raises."""
    if fetched.body is None:
        return EndpointResult(fetched.endpoint, reason=fetched.reason, detail=fetched.detail)
    try:
        parsed = parse_endpoint(fetched.endpoint, fetched.body)
    except PayloadError as exc:
        return EndpointResult(fetched.endpoint, reason=exc.reason, detail=exc.message)
    except Exception as exc:  # a parser bug is the exporter's fault, not the charger's
        log.exception("%s: unexpected error while parsing", fetched.endpoint)
        return EndpointResult(
            fetched.endpoint, reason=Reason.EXPORTER_ERROR, detail=f"exporter error: {type(exc).__name__}"
        )
    return EndpointResult(fetched.endpoint, parsed=parsed)


def parse_charger(fetched: ChargerFetch) -> ChargerResult:
    """Parse every endpoint of one charger's fetch (pure; the step between fetch and metrics)."""
    return ChargerResult(
        charger=fetched.charger,
        endpoints={ep: parse_fetched(outcome) for ep, outcome in fetched.endpoints.items()},
        duration=fetched.duration,
        taken_at=fetched.taken_at,
    )
