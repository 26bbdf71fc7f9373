"""Parsing: every payload variant listed in shared/reference/DEVICE-API.md, and every kind of bad value."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from exporter import parse
from exporter.model import EndpointFetch, Problem, Reason
from exporter.parse import (
    Charging,
    Configuration,
    Limits,
    PayloadError,
    Transaction,
    decode_body,
    parse_charging,
    parse_configuration,
    parse_endpoint,
    parse_fetched,
    parse_limits,
    parse_transaction,
)

OPENAPI = Path(__file__).parent / "fixtures" / "payloads" / "openapi"


def test_openapi_sample_payloads_parse_completely() -> None:
    conf = parse_endpoint("configuration", (OPENAPI / "configuration.json").read_bytes())
    tx = parse_endpoint("transaction", (OPENAPI / "transaction.json").read_bytes())
    ch = parse_endpoint("charging", (OPENAPI / "charging.json").read_bytes())
    lim = parse_endpoint("limits", (OPENAPI / "limits.json").read_bytes())
    assert conf.reading == Configuration(
        power_domain="Daheim",
        controller_name="Garage",
        effective_current_limit=32.0,
        has_phase_rotation=False,
        has_phase_shutoff=True,
        has_phase_turnon=None,
    )
    assert tx.reading == Transaction(
        state="Charging",
        started_time=1699359776,
        ended_time=1699359816,
        meter_start=0.302999973,
        meter_stop=0.302999973,
        vehicle_status="C2",
        charge_controller_status="C",
        used_phases="111",
        start_reason="Authorized",
        stop_reason="DeAuthorized",
        allocation_source="OCPP Profile",
    )
    assert ch.reading == Charging(
        voltages=(234.1605072, 234.0818024, 234.2052612),
        currents=(8.13, 8.2, 8.09),
        allocated_current=16,
        commanded_current=0,
        available_current=18,
        signaled_current=18,
        frequency=49.930336,
        energy_imported=0.307999998,
        active_power=2036.600098,
    )
    assert lim.reading == Limits(
        enabled=True, current_limit=15.5, power_limit=10000.0, timeout_ms=300000, limits_reported=True
    )
    assert conf.problems == tx.problems == ch.problems == lim.problems == ()


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"pdName": "A", "ctrlrName": "B"}, ("A", "B")),
        ({"powerDomainName": "A", "controllerName": "B"}, ("A", "B")),
    ],
)
def test_name_variants(payload: dict[str, str], expected: tuple[str, str]) -> None:
    reading = parse_configuration(payload).reading
    assert (reading.power_domain, reading.controller_name) == expected


@pytest.mark.parametrize("key", ["hasPhaseStShutoff", "hasPhaseShutoff", "hasPhaseSTShutoff"])
def test_phase_shutoff_flag_variants(key: str) -> None:
    assert parse_configuration({key: True}).reading.has_phase_shutoff is True
    assert parse_configuration({key: False}).reading.has_phase_shutoff is False


def test_phase_turnon_flag_and_int_flags() -> None:
    reading = parse_configuration({"hasPhaseSTTurnon": 1, "hasPhaseRotation": 0}).reading
    assert reading.has_phase_turnon is True
    assert reading.has_phase_rotation is False


def test_fields_moved_between_configuration_and_transaction() -> None:
    # Some firmware reports effectiveAmperageLimit (and sessionId) in transaction instead of configuration.
    tx = parse_transaction({"effectiveAmperageLimit": 16.0, "sessionId": "018b-..."})
    assert tx.reading.effective_current_limit == 16.0
    assert tx.problems == ()


def test_nan_literal_from_the_device() -> None:
    body = b'{"amperageLimit":NaN,"powerLimit":NaN,"timeout": 300000}'
    parsed = parse_endpoint("limits", body)
    assert parsed.reading == Limits(
        enabled=None, current_limit=None, power_limit=None, timeout_ms=300000, limits_reported=True
    )
    assert parsed.problems == ()  # NaN means "not set", it is not an error


@pytest.mark.parametrize("token", ["nan", "-nan", "NAN", "-NaN"])
def test_c_style_nan_tokens_are_accepted(token: str) -> None:
    body = f'{{"amperageLimit": {token}, "powerLimit":{token},"timeout":5000}}'.encode()
    parsed = parse_endpoint("limits", body)
    assert parsed.reading.current_limit is None
    assert parsed.reading.power_limit is None
    assert parsed.reading.timeout_ms == 5000


def test_limits_missing_or_null_are_not_reported() -> None:
    assert parse_limits({"enabled": True, "timeout": 1000}).reading.limits_reported is False
    assert parse_limits({"amperageLimit": None}).reading.limits_reported is False
    assert parse_limits({"powerLimit": "NaN"}).reading.limits_reported is True


def test_negative_meter_readings_are_skipped_and_reported() -> None:
    parsed = parse_charging({"energyImported": -1.5})
    assert parsed.reading.energy_imported is None
    assert parsed.problems == (Problem("energyImported", "negative meter reading"),)


def test_nan_repair_never_touches_strings() -> None:
    decoded = decode_body(b'{"ctrlrName": "Bay [1,nan]", "amperageLimit": nan, "x": "a\\"b,inf}"}')
    assert decoded["ctrlrName"] == "Bay [1,nan]"
    assert math.isnan(decoded["amperageLimit"])
    assert decoded["x"] == 'a"b,inf}'


def test_nan_inside_a_string_is_left_alone() -> None:
    assert decode_body(b'{"state": "nan", "x": [1, nan]}') == {
        "state": "nan",
        "x": [1, pytest.approx(math.nan, nan_ok=True)],
    }


def test_null_and_wrong_types_skip_only_that_value() -> None:
    payload = {
        "voltage": [230.1, None, "231"],
        "amperage": [6.0, 6.1, 6.2],
        "frequency": None,
        "lastActivePower": "2000",
        "energyImported": True,
        "allocatedAmperage": 16,
    }
    parsed = parse_charging(payload)
    assert parsed.reading.voltages == (230.1, None, None)
    assert parsed.reading.currents == (6.0, 6.1, 6.2)
    assert parsed.reading.frequency is None
    assert parsed.reading.active_power is None
    assert parsed.reading.energy_imported is None
    assert parsed.reading.allocated_current == 16
    assert parsed.problems == (
        Problem("voltage", "null"),
        Problem("voltage", "expected a number, got a string"),
        Problem("frequency", "null"),
        Problem("energyImported", "expected a number, got a boolean"),
        Problem("lastActivePower", "expected a number, got a string"),
    )


def test_missing_fields_are_silent() -> None:
    parsed = parse_charging({"voltage": [230.0]})
    assert parsed.reading == Charging(voltages=(230.0,))
    assert parsed.problems == ()
    assert parse_transaction({}).reading == Transaction()
    assert parse_configuration({}).problems == ()


@pytest.mark.parametrize(
    ("voltage", "expected"),
    [([231.5], (231.5,)), ([231.5, 229.0], (231.5, 229.0)), ({}, ()), ([], ())],
)
def test_one_and_two_phase_arrays_and_empty_objects(voltage: object, expected: tuple[float, ...]) -> None:
    parsed = parse_charging({"voltage": voltage})
    assert parsed.reading.voltages == expected
    assert parsed.problems == ()


def test_more_than_three_entries_keeps_three_and_reports() -> None:
    parsed = parse_charging({"amperage": [1.0, 2.0, 3.0, 4.0]})
    assert parsed.reading.currents == (1.0, 2.0, 3.0)
    assert parsed.problems == (Problem("amperage", "4 entries, only the first 3 are phases"),)


def test_array_of_wrong_type_is_reported() -> None:
    parsed = parse_charging({"voltage": 230.0})
    assert parsed.reading.voltages == ()
    assert parsed.problems == (Problem("voltage", "expected an array, got a number"),)


def test_infinity_is_skipped_and_reported() -> None:
    parsed = parse_endpoint("charging", b'{"frequency": Infinity, "lastActivePower": -inf}')
    assert parsed.reading.frequency is None
    assert parsed.reading.active_power is None
    assert [p.field for p in parsed.problems] == ["frequency", "lastActivePower"]


def test_unknown_enum_values_pass_through() -> None:
    tx = parse_transaction(
        {
            "state": "AWAITING_AUTHORIZATION",
            "vehicleStatus": "X9",
            "chargeControllerStatus": "C2",
            "startReason": "SomethingNew",
            "stopReason": "Deauthorized",
            "allocationSourceName": "Solar",
        }
    )
    assert (tx.reading.state, tx.reading.vehicle_status, tx.reading.charge_controller_status) == (
        "AWAITING_AUTHORIZATION",
        "X9",
        "C2",
    )
    assert (tx.reading.start_reason, tx.reading.stop_reason, tx.reading.allocation_source) == (
        "SomethingNew",
        "Deauthorized",
        "Solar",
    )
    assert tx.problems == ()


def test_used_phases_sent_as_a_number_keeps_leading_zeros() -> None:
    assert parse_transaction({"usedPhasesSession": 11}).reading.used_phases == "011"
    assert parse_transaction({"usedPhasesSession": "100"}).reading.used_phases == "100"


def test_overlong_label_string_is_rejected() -> None:
    parsed = parse_transaction({"state": "x" * 65})
    assert parsed.reading.state is None
    assert parsed.problems[0].field == "state"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"setAmperageLimit": 10, "sePowerLimit": 4000, "setTimeout": 60000}', (10.0, 4000.0, 60000.0)),
        (b'{"amperageLimit": "NaN", "powerLimit": null, "timeout": 300000}', (None, None, 300000.0)),
    ],
)
def test_limits_variants(body: bytes, expected: tuple[float | None, ...]) -> None:
    reading = parse_endpoint("limits", body).reading
    assert (reading.current_limit, reading.power_limit, reading.timeout_ms) == expected


def test_limits_null_is_counted() -> None:
    assert parse_limits({"powerLimit": None}).problems == (Problem("powerLimit", "null"),)


def test_websocket_envelope_is_unwrapped() -> None:
    body = json.dumps({"topic": "charging", "message": {"frequency": 50.01}}).encode()
    assert parse_endpoint("charging", body).reading.frequency == 50.01


def test_utf8_bom_is_accepted() -> None:
    assert decode_body(b'\xef\xbb\xbf{"state": "Idle"}') == {"state": "Idle"}


@pytest.mark.parametrize(
    ("body", "reason", "message"),
    [
        (b'{"voltage": [230.1,', "invalid_json", "body is not JSON: Expecting value at line 1 column 20"),
        (b"", "invalid_json", "body is not JSON: Expecting value at line 1 column 1"),
        (b"\xff\xfe", "invalid_json", "body is not UTF-8 (invalid start byte at byte 0)"),
        (b"[1, 2]", "invalid_payload", "expected a JSON object, got an array"),
        (b"null", "invalid_payload", "expected a JSON object, got null"),
    ],
)
def test_unusable_bodies(body: bytes, reason: str, message: str) -> None:
    with pytest.raises(PayloadError) as info:
        parse_endpoint("charging", body)
    assert (info.value.reason, info.value.message) == (reason, message)


def test_a_parser_bug_is_the_exporters_error_not_the_chargers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_: object) -> None:
        raise KeyError("bug")

    monkeypatch.setitem(parse.PARSERS, "limits", broken)
    result = parse_fetched(EndpointFetch("limits", body=b'{"enabled": true}'))
    assert result.reason is Reason.EXPORTER_ERROR
    assert result.detail == "exporter error: KeyError"
    assert "unexpected error while parsing" in caplog.text


def test_a_transport_error_passes_through_parsing_unchanged() -> None:
    result = parse_fetched(EndpointFetch("charging", reason=Reason.TIMEOUT, detail="no answer before the deadline"))
    assert (result.ok, result.reason, result.detail) == (False, Reason.TIMEOUT, "no answer before the deadline")
