"""Turn the raw bodies of the four device endpoints into values in the metrics' units.

Pure functions, no I/O. Which field is read how is a table: the catalogue's ``read`` sources (values exported as
they are) and :data:`INPUTS` (values that feed labels and derived metrics).

What real devices send differs from the vendor's OpenAPI file (see
``shared/reference/DEVICE-API.md``); the parsers accept every documented variant:

* field-name variants (``pdName``/``powerDomainName``, ``ctrlrName``/``controllerName``, the phase-switch flags),
  and fields that moved between ``configuration`` and ``transaction``;
* the non-standard ``NaN`` literal (and ``nan``/``inf`` as C firmware prints them);
* ``null`` and wrong-typed values (a number where the document says string, 0/1 where it says boolean), and
  finite values whose unit conversion overflows: that one value is skipped and reported as a :class:`Problem`,
  the rest of the payload is used; missing fields are skipped silently (older firmware simply does not have them);
* one-, two- or three-phase arrays, and ``{}`` where an array is documented;
* enum values no document lists: kept as they are;
* the WebSocket envelope ``{"topic": ..., "message": {...}}``.
"""

from __future__ import annotations

import codecs
import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from exporter.catalogue import CATALOGUE, Source, read
from exporter.scrape.devicetext import device_text
from exporter.scrape.results import (
    ENDPOINTS,
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


Value = float | str | bool | tuple[float | None, ...]
Values = dict[str, Value]  # one endpoint's values: metric name (or input key below) -> value in the metric's unit

# Device values that are not exported as they are but feed labels and derived metrics (state sets, info metrics,
# the session metrics). The values exported as they are, each with its source, are in exporter.catalogue.
INPUTS: Final[Mapping[str, Source]] = {
    "power_domain": read("configuration", "pdName", "powerDomainName", kind="text"),
    "controller_name": read("configuration", "ctrlrName", "controllerName", kind="text"),
    "state": read("transaction", "state", kind="text"),
    "vehicle_status": read("transaction", "vehicleStatus", kind="text"),
    "charge_controller_status": read("transaction", "chargeControllerStatus", kind="text"),
    "started_time": read("transaction", "startedTime"),
    "ended_time": read("transaction", "endedTime"),
    # meterStart is read once, as the catalogue's pulsatrix_session_meter_start_joules (the session energy uses it)
    "meter_stop": read("transaction", "meterStop", kind="meter", scale=3_600_000.0),
    "used_phases": read("transaction", "usedPhasesSession", kind="text"),
    "start_reason": read("transaction", "startReason", kind="text"),
    "stop_reason": read("transaction", "stopReason", kind="text"),
    "allocation_source": read("transaction", "allocationSourceName", "allocationSource", kind="text"),
}

# Per endpoint: (key, source) of every value it may hold, in catalogue order.
FIELDS: Final[Mapping[str, tuple[tuple[str, Source], ...]]] = {
    endpoint: tuple(
        (key, source)
        for key, source in [*((s.name, s.read) for s in CATALOGUE if s.read is not None), *INPUTS.items()]
        if endpoint in source.endpoints
    )
    for endpoint in ENDPOINTS
}
# FIELDS as parse_values reads them: (key, source, its first field name, its other names, kind, scale).
_PLAN: Final = {
    endpoint: tuple((key, s, s.names[0], s.names[1:], s.kind, s.scale) for key, s in fields)
    for endpoint, fields in FIELDS.items()
}
_NUMERIC: Final = frozenset(("number", "meter", "setting"))
_MISSING: Final = object()
_INF: Final = math.inf


# Bare tokens C firmware prints for non-finite floats, where a JSON value may stand. Strings are matched (and kept)
# first, so that "nan" inside a string value is never touched. Linear in the body's size: a string runs to its
# closing quote or, unterminated, to the end of the text (one match, not one failed scan to the end from every later
# quote: with that, 32,000 escaped quotes took 13 s), and every quantifier is possessive (no backtracking).
_NONFINITE_RE = re.compile(
    r'"(?:[^"\\]++|\\[\s\S])*+(?:"|\\?\Z)|([\[:,]\s*+)(-?nan|-?inf(?:inity)?)(?=\s*+[,\]}])', re.IGNORECASE
)


def _nonfinite_to_json(match: re.Match[str]) -> str:
    if match.group(2) is None:
        return match.group(0)  # a string literal
    token = match.group(2).lower()
    if "nan" in token:
        return match.group(1) + "NaN"
    return match.group(1) + ("-Infinity" if token.startswith("-") else "Infinity")


# json.loads' own scanner (the typeshed stubs do not list the attribute), called without json.loads' wrappers
_SCAN: Final[Callable[[str, int], tuple[Any, int]]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _loads(text: str) -> Any:
    """``json.loads(text)``, exactly: its wrappers (a BOM check and two whitespace regexes) cost a quarter of
    decoding a small reply, so a body with its value first and at most whitespace after it goes to the scanner
    directly; any other body (and every "Expecting value" or "Extra data" error) goes through json.loads."""
    try:
        data, end = _SCAN(text, 0)
    except StopIteration:  # no value at index 0 (whitespace, a BOM, or not JSON): json.loads decides
        return json.loads(text)
    if end != len(text) and text[end:].strip(" \t\n\r"):  # JSON's whitespace
        return json.loads(text)
    return data


def decode_body(body: bytes) -> dict[str, Any]:
    """Decode an endpoint's body to a JSON object, accepting the ``NaN`` literals devices send."""
    try:
        # What decode("utf-8-sig") does (same errors, same positions), without its codec written in Python
        text = body[3:].decode() if body.startswith(codecs.BOM_UTF8) else body.decode()
    except UnicodeDecodeError as exc:
        raise PayloadError(Reason.INVALID_JSON, f"body is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        data = _loads(text)
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
        raise PayloadError(Reason.INVALID_JSON, f"body is not usable JSON: {device_text(exc, 80)}") from None
    if isinstance(data, dict) and isinstance(data.get("message"), dict) and "topic" in data:
        data = data["message"]  # WebSocket envelope
    if not isinstance(data, dict):
        raise PayloadError(Reason.INVALID_PAYLOAD, f"expected a JSON object, got {_json_type(data)}")
    return data


def _read(obj: Mapping[str, Any], source: Source, values: Values, key: str, problems: list[Problem]) -> None:
    """Read one value into ``values[key]``, or leave it out: silently when no field of the source is there (older
    firmware), with a Problem when the field holds something unusable."""
    for name in source.names:
        if name in obj:
            break
    else:
        return
    raw = obj[name]
    kind = source.kind
    if kind == "phases":
        if isinstance(raw, dict) and not raw:
            return  # documented quirk: {} where an array is expected
        if not isinstance(raw, list):
            problems.append(Problem(name, f"expected an array, got {_json_type(raw)}"))
            return
        if len(raw) > MAX_PHASES:
            problems.append(Problem(name, f"{len(raw)} entries, only the first {MAX_PHASES} are phases"))
        phases = tuple(_number(name, item, source.scale, problems) for item in raw[:MAX_PHASES])
        if phases:
            values[key] = tuple(None if p is None or math.isnan(p) else p for p in phases)
        return
    if raw is None:
        problems.append(Problem(name, "null"))
        return
    if kind == "flag":
        if isinstance(raw, bool):
            values[key] = raw
        else:
            problems.append(Problem(name, f"expected true or false, got {_json_type(raw)}"))
        return
    if kind == "text":
        if not isinstance(raw, str):
            problems.append(Problem(name, f"expected a string, got {_json_type(raw)}"))
            return
        text = raw.strip()
        if len(text) > MAX_LABEL_LEN or not text.isprintable():
            problems.append(Problem(name, f"string is longer than {MAX_LABEL_LEN} characters or not printable"))
        elif text:
            values[key] = text
        return
    number = _number(name, raw, source.scale, problems)
    if number is None:
        return
    if math.isnan(number):
        if kind == "setting":
            values[key] = number  # NaN = "not set; the controller decides": reported, never exported as a sample
        return
    if kind == "meter":
        if number < 0:
            problems.append(Problem(name, "negative meter reading"))
            return
        number = round(number, 3)  # float32 noise of the kWh reading, scaled to J
    values[key] = number


def _number(name: str, raw: Any, scale: float, problems: list[Problem]) -> float | None:
    """A finite number in the metric's unit, NaN for "not set", or None (with a Problem) for anything else."""
    if isinstance(raw, str) and raw.strip().lower() == "nan":
        return math.nan
    if raw is None:
        problems.append(Problem(name, "null"))
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        problems.append(Problem(name, f"expected a number, got {_json_type(raw)}"))
        return None
    try:
        number = float(raw) * scale
    except OverflowError:
        problems.append(Problem(name, "number out of range"))
        return None
    if math.isinf(number):
        message = "infinite" if math.isinf(raw) else "overflows when converted to the metric's unit"
        problems.append(Problem(name, message))
        return None
    return number


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


def _phases(raw: list[Any], scale: float) -> tuple[float, ...] | None:
    """The usual phases array, 1 to 3 numbers that stay finite in the metric's unit, as :func:`_read` reads it;
    None for any other, which :func:`_read` reads (and reports)."""
    if not 0 < len(raw) <= MAX_PHASES:
        return None
    phases = []
    for item in raw:
        cls = item.__class__
        if cls is not float and cls is not int:
            return None
        try:
            number = float(item) * scale
        except OverflowError:
            return None
        if not -_INF < number < _INF:  # NaN or infinite
            return None
        phases.append(number)
    return tuple(phases)


def parse_values(endpoint: str, obj: Mapping[str, Any]) -> Parsed[Values]:
    """Read every field of this endpoint that is in the table; each unusable value is one Problem."""
    values: Values = {}
    problems: list[Problem] = []
    for key, source, name, others, kind, scale in _PLAN[endpoint]:
        # A usable value is read here, as _read would read it (a call per field cost a third of parsing); a value
        # that is a Problem is left to _read, which reports it.
        raw = obj.get(name, _MISSING)
        if raw is _MISSING:
            for other in others:
                raw = obj.get(other, _MISSING)
                if raw is not _MISSING:
                    break
            else:
                continue  # no field of the source is there (older firmware): skipped silently
        cls = raw.__class__
        if (cls is float or cls is int) and kind in _NUMERIC:
            try:
                number = float(raw) * scale
            except OverflowError:
                number = _INF  # out of range: _read reports it
            if math.isnan(number):  # the device's "not set": kept for a setting, never exported
                if kind == "setting":
                    values[key] = number
                continue
            if -_INF < number < _INF and (kind != "meter" or number >= 0):  # finite and, a meter, not negative
                values[key] = round(number, 3) if kind == "meter" else number
                continue
        elif cls is bool and kind == "flag":
            values[key] = raw
            continue
        elif cls is str and kind == "text":
            text = raw.strip()
            if len(text) <= MAX_LABEL_LEN and text.isprintable():
                if text:  # an empty text is no value
                    values[key] = text
                continue
        elif cls is list and kind == "phases":
            phases = _phases(raw, scale)
            if phases is not None:
                values[key] = phases
                continue
        _read(obj, source, values, key, problems)
    return Parsed(values, tuple(problems))


def parse_endpoint(endpoint: str, body: bytes) -> Parsed[Values]:
    """Decode and parse one endpoint's body; raise :class:`PayloadError` if the body is unusable as a whole."""
    return parse_values(endpoint, decode_body(body))


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
