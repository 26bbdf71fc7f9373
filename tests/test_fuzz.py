"""Property tests: whatever a device sends, parsing and metric building never crash and never emit NaN."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from exporter.config import ChargerConfig
from exporter.metrics import StaticCollector, device_families
from exporter.model import ENDPOINTS
from exporter.parse import PayloadError, parse_endpoint
from tests.support.readings import result_from_bodies

FIELDS = [
    "pdName", "powerDomainName", "ctrlrName", "controllerName", "effectiveAmperageLimit", "hasPhaseRotation",
    "hasPhaseStShutoff", "hasPhaseShutoff", "hasPhaseSTShutoff", "hasPhaseSTTurnon", "state", "startedTime",
    "endedTime", "meterStart", "meterStop", "vehicleStatus", "chargeControllerStatus", "usedPhasesSession",
    "startReason", "stopReason", "allocationSourceName", "voltage", "amperage", "allocatedAmperage",
    "commandedAmperage", "availableAmperage", "signaledAmperage", "frequency", "energyImported", "lastActivePower",
    "enabled", "amperageLimit", "powerLimit", "timeout", "topic", "message",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=80),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)),
    max_leaves=20,
)
payloads = st.dictionaries(st.sampled_from(FIELDS), values, max_size=len(FIELDS))
CHARGER = ChargerConfig("fuzz", "http://192.0.2.1", labels=(("site", "x"),))


def encode(obj: Any) -> bytes:
    return json.dumps(obj).encode()  # writes NaN/Infinity literals like the devices do


@settings(max_examples=150, deadline=None)
@given(payloads, st.sampled_from(ENDPOINTS))
def test_any_object_parses_without_crashing(payload: dict[str, Any], endpoint: str) -> None:
    try:
        parse_endpoint(endpoint, encode(payload))
    except PayloadError as exc:
        assert exc.reason in ("invalid_json", "invalid_payload")


@settings(max_examples=100, deadline=None)
@given(st.fixed_dictionaries({ep: payloads for ep in ENDPOINTS}))
def test_any_replies_render_a_valid_exposition_without_nan(replies: dict[str, dict[str, Any]]) -> None:
    result = result_from_bodies(CHARGER, {ep: encode(body) for ep, body in replies.items()})
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StaticCollector(device_families([result])))
    text = generate_latest(registry).decode()
    for line in text.splitlines():
        if not line.startswith("#"):
            assert not math.isnan(float(line.rsplit(" ", 1)[1])), line


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_rejected_cleanly(body: bytes) -> None:
    try:
        parse_endpoint("charging", body)
    except PayloadError as exc:
        assert exc.reason in ("invalid_json", "invalid_payload")


def test_pathological_bodies_become_reasons_not_crashes() -> None:
    cases = {
        b'{"frequency": ' + b"9" * 400 + b"}": None,  # integer too large for a float: that value is skipped
        b'{"frequency": ' + b"9" * 5000 + b"}": "invalid_json",  # longer than Python converts
        b"[" * 100_000 + b"]" * 100_000: "invalid_json",  # nested deeper than the recursion limit
    }
    for body, reason in cases.items():
        try:
            parsed = parse_endpoint("charging", body)
        except PayloadError as exc:
            assert exc.reason == reason
        else:
            assert reason is None
            assert parsed.reading.frequency is None
            assert [p.field for p in parsed.problems] == ["frequency"]
