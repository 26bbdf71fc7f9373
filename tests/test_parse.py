"""Parsing: every payload variant listed in shared/reference/DEVICE-API.md, and every kind of bad value."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.scrape import parse
from exporter.scrape.parse import PayloadError, Values, decode_body, parse_endpoint, parse_fetched, parse_values
from exporter.scrape.results import EndpointFetch, Parsed, Problem, Reason

OPENAPI = Path(__file__).parent / "fixtures" / "payloads" / "openapi"

CURRENT_LIMIT = "pulsatrix_api_current_limit_amperes"
POWER_LIMIT = "pulsatrix_api_power_limit_watts"
TIMEOUT = "pulsatrix_api_limit_timeout_seconds"
VOLTS = "pulsatrix_voltage_volts"
AMPS = "pulsatrix_current_amperes"
ENERGY = "pulsatrix_energy_imported_joules_total"
NAN = pytest.approx(math.nan, nan_ok=True)


def parse_configuration(obj: Mapping[str, object]) -> Parsed[Values]:
    return parse_values("configuration", obj)


def parse_transaction(obj: Mapping[str, object]) -> Parsed[Values]:
    return parse_values("transaction", obj)


def parse_charging(obj: Mapping[str, object]) -> Parsed[Values]:
    return parse_values("charging", obj)


def parse_limits(obj: Mapping[str, object]) -> Parsed[Values]:
    return parse_values("limits", obj)


def test_openapi_sample_payloads_parse_completely() -> None:
    conf = parse_endpoint("configuration", (OPENAPI / "configuration.json").read_bytes())
    tx = parse_endpoint("transaction", (OPENAPI / "transaction.json").read_bytes())
    ch = parse_endpoint("charging", (OPENAPI / "charging.json").read_bytes())
    lim = parse_endpoint("limits", (OPENAPI / "limits.json").read_bytes())
    # Values in the metrics' units (kWh → J, ms → s), keyed by metric name (or by input name, see parse.INPUTS).
    assert conf.values == {
        "power_domain": "Daheim",
        "controller_name": "Garage",
        "pulsatrix_has_phase_rotation": False,
        "pulsatrix_has_phase_shutoff": True,
        "pulsatrix_effective_current_limit_amperes": 32.0,
    }
    assert tx.values == {
        "state": "Idle",
        "started_time": 1699359776.0,
        "ended_time": 1699359816.0,
        "pulsatrix_session_meter_start_joules": 1090799.903,  # meterStart: exported, and the session energy's base
        "meter_stop": 1090799.903,
        "vehicle_status": "A1",
        "charge_controller_status": "A",
        "used_phases": "111",
        "start_reason": "Authorized",
        "stop_reason": "DeAuthorized",
        "allocation_source": "OCPP Profile",
    }
    assert ch.values == {
        VOLTS: (234.1605072, 234.0818024, 234.2052612),
        AMPS: (8.13, 8.2, 8.09),
        "pulsatrix_active_power_watts": 2036.600098,
        "pulsatrix_grid_frequency_hertz": 49.930336,
        ENERGY: 1108799.993,
        "pulsatrix_allocated_current_amperes": 16.0,
        "pulsatrix_commanded_current_amperes": 0.0,
        "pulsatrix_available_current_amperes": 18.0,
        "pulsatrix_signaled_current_amperes": 18.0,
    }
    assert lim.values == {
        "pulsatrix_api_limit_enabled": True,
        CURRENT_LIMIT: 15.5,
        POWER_LIMIT: 10000.0,
        TIMEOUT: 300.0,
    }
    assert conf.problems == tx.problems == ch.problems == lim.problems == ()


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"pdName": "A", "ctrlrName": "B"}, ("A", "B")),
        ({"powerDomainName": "A", "controllerName": "B"}, ("A", "B")),
    ],
)
def test_name_variants(payload: dict[str, str], expected: tuple[str, str]) -> None:
    reading = parse_configuration(payload).values
    assert (reading["power_domain"], reading["controller_name"]) == expected


@pytest.mark.parametrize("key", ["hasPhaseStShutoff", "hasPhaseShutoff", "hasPhaseSTShutoff"])
def test_phase_shutoff_flag_variants(key: str) -> None:
    assert parse_configuration({key: True}).values == {"pulsatrix_has_phase_shutoff": True}
    assert parse_configuration({key: False}).values == {"pulsatrix_has_phase_shutoff": False}


def test_phase_turnon_flag() -> None:
    assert parse_configuration({"hasPhaseSTTurnon": True}).values == {"pulsatrix_has_phase_turnon": True}


@pytest.mark.parametrize(
    ("endpoint", "payload", "message"),
    [
        # 0/1 where the document says boolean
        ("configuration", {"hasPhaseRotation": 1}, "expected true or false, got a number"),
        ("configuration", {"hasPhaseSTTurnon": 0}, "expected true or false, got a number"),
        ("limits", {"enabled": 1}, "expected true or false, got a number"),
        ("limits", {"setPhaseRotation": "true"}, "expected true or false, got a string"),
        # a number where the document says string
        ("transaction", {"state": 5}, "expected a string, got a number"),
        ("configuration", {"pdName": 5}, "expected a string, got a number"),
        ("transaction", {"usedPhasesSession": 5}, "expected a string, got a number"),
        ("transaction", {"usedPhasesSession": 11}, "expected a string, got a number"),
        ("transaction", {"vehicleStatus": False}, "expected a string, got a boolean"),
        # finite readings whose conversion to the metric's unit overflows (kWh → J)
        ("charging", {"energyImported": 1e308}, "overflows when converted to the metric's unit"),
        ("transaction", {"meterStop": 1e308}, "overflows when converted to the metric's unit"),
        ("transaction", {"meterStart": 1e308}, "overflows when converted to the metric's unit"),
    ],
)
def test_wrong_types_and_overflowing_conversions_are_skipped_and_reported(
    endpoint: str, payload: dict[str, object], message: str
) -> None:
    parsed = parse_values(endpoint, payload)
    assert parsed.values == {}
    assert parsed.problems == (Problem(next(iter(payload)), message),)


def test_every_limits_field_name_of_the_device_document_is_read() -> None:
    # DEVICE-API.md: `amperageLimit`, `powerLimit`, `timeout` (OpenAPI) and `setAmperageLimit`, `sePowerLimit`,
    # `setTimeout`, `setOnePhaseLimit`, `setPhaseRotation` (prose docs), plus `enabled`.
    prose = parse_limits(
        {
            "enabled": False,
            "setAmperageLimit": 10,
            "sePowerLimit": 4000,
            "setTimeout": 60000,
            "setOnePhaseLimit": True,
            "setPhaseRotation": False,
        }
    )
    assert prose.values == {
        "pulsatrix_api_limit_enabled": False,
        CURRENT_LIMIT: 10.0,
        POWER_LIMIT: 4000.0,
        TIMEOUT: 60.0,
        "pulsatrix_api_one_phase_limit": True,
        "pulsatrix_api_phase_rotation": False,
    }
    assert prose.problems == ()


def test_fields_moved_between_configuration_and_transaction() -> None:
    # Some firmware reports effectiveAmperageLimit (and sessionId) in transaction instead of configuration.
    tx = parse_transaction({"effectiveAmperageLimit": 16.0, "sessionId": "018b-..."})
    assert tx.values == {"pulsatrix_effective_current_limit_amperes": 16.0}
    assert tx.problems == ()


def test_nan_literal_from_the_device() -> None:
    body = b'{"amperageLimit":NaN,"powerLimit":NaN,"timeout": 300000}'
    parsed = parse_endpoint("limits", body)
    # NaN means "not set": kept (the limit is reported, pulsatrix_api_limit_active says 0), never a sample
    assert parsed.values == {
        CURRENT_LIMIT: pytest.approx(math.nan, nan_ok=True),
        POWER_LIMIT: pytest.approx(math.nan, nan_ok=True),
        TIMEOUT: 300.0,
    }
    assert parsed.problems == ()


@pytest.mark.parametrize("token", ["nan", "-nan", "NAN", "-NaN"])
def test_c_style_nan_tokens_are_accepted(token: str) -> None:
    body = f'{{"amperageLimit": {token}, "powerLimit":{token},"timeout":5000}}'.encode()
    parsed = parse_endpoint("limits", body)
    assert parsed.values == {CURRENT_LIMIT: NAN, POWER_LIMIT: NAN, TIMEOUT: 5.0}


def test_limits_missing_or_null_are_not_reported() -> None:
    assert CURRENT_LIMIT not in parse_limits({"enabled": True, "timeout": 1000}).values
    assert CURRENT_LIMIT not in parse_limits({"amperageLimit": None}).values
    assert parse_limits({"powerLimit": "NaN"}).values == {POWER_LIMIT: NAN}


def test_negative_meter_readings_are_skipped_and_reported() -> None:
    parsed = parse_charging({"energyImported": -1.5})
    assert parsed.values == {}
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
    assert parsed.values == {
        VOLTS: (230.1, None, None),
        AMPS: (6.0, 6.1, 6.2),
        "pulsatrix_allocated_current_amperes": 16.0,
    }
    assert parsed.problems == (  # in catalogue order
        Problem("voltage", "null"),
        Problem("voltage", "expected a number, got a string"),
        Problem("lastActivePower", "expected a number, got a string"),
        Problem("frequency", "null"),
        Problem("energyImported", "expected a number, got a boolean"),
    )


def test_missing_fields_are_silent() -> None:
    parsed = parse_charging({"voltage": [230.0]})
    assert parsed.values == {VOLTS: (230.0,)}
    assert parsed.problems == ()
    assert parse_transaction({}).values == {}
    assert parse_configuration({}).problems == ()


@pytest.mark.parametrize(
    ("voltage", "expected"),
    [([231.5], (231.5,)), ([231.5, 229.0], (231.5, 229.0)), ({}, None), ([], None)],
)
def test_one_and_two_phase_arrays_and_empty_objects(voltage: object, expected: tuple[float, ...] | None) -> None:
    parsed = parse_charging({"voltage": voltage})
    assert parsed.values.get(VOLTS) == expected
    assert parsed.problems == ()


def test_more_than_three_entries_keeps_three_and_reports() -> None:
    parsed = parse_charging({"amperage": [1.0, 2.0, 3.0, 4.0]})
    assert parsed.values[AMPS] == (1.0, 2.0, 3.0)
    assert parsed.problems == (Problem("amperage", "4 entries, only the first 3 are phases"),)


def test_array_of_wrong_type_is_reported() -> None:
    parsed = parse_charging({"voltage": 230.0})
    assert parsed.values == {}
    assert parsed.problems == (Problem("voltage", "expected an array, got a number"),)


def test_infinity_is_skipped_and_reported() -> None:
    parsed = parse_endpoint("charging", b'{"frequency": Infinity, "lastActivePower": -inf}')
    assert parsed.values == {}
    assert {p.field for p in parsed.problems} == {"frequency", "lastActivePower"}


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
    assert tx.values == {
        "state": "AWAITING_AUTHORIZATION",
        "vehicle_status": "X9",
        "charge_controller_status": "C2",
        "start_reason": "SomethingNew",
        "stop_reason": "Deauthorized",
        "allocation_source": "Solar",
    }
    assert tx.problems == ()


def test_used_phases_is_a_string_of_three_characters() -> None:
    assert parse_transaction({"usedPhasesSession": "100"}).values == {"used_phases": "100"}


def test_overlong_label_string_is_rejected() -> None:
    parsed = parse_transaction({"state": "x" * 65})
    assert parsed.values == {}
    assert parsed.problems[0].field == "state"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"setAmperageLimit": 10, "sePowerLimit": 4000, "setTimeout": 60000}', (10.0, 4000.0, 60.0)),
        (b'{"amperageLimit": 6, "setPowerLimit": 1380, "timeout": 300000}', (6.0, 1380.0, 300.0)),
        (b'{"amperageLimit": "15", "powerLimit": null, "timeout": 300000}', (None, None, 300.0)),
    ],
)
def test_limits_variants(body: bytes, expected: tuple[float | None, ...]) -> None:
    reading = parse_endpoint("limits", body).values
    assert (reading.get(CURRENT_LIMIT), reading.get(POWER_LIMIT), reading.get(TIMEOUT)) == expected


def test_limits_null_is_counted() -> None:
    assert parse_limits({"powerLimit": None}).problems == (Problem("powerLimit", "null"),)


def test_websocket_envelope_is_unwrapped() -> None:
    body = json.dumps({"topic": "charging", "message": {"frequency": 50.01}}).encode()
    assert parse_endpoint("charging", body).values == {"pulsatrix_grid_frequency_hertz": 50.01}


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
    def broken(*_: object) -> None:
        raise KeyError("bug")

    monkeypatch.setattr(parse, "parse_values", broken)
    result = parse_fetched(EndpointFetch("limits", body=b'{"enabled": true}'))
    assert result.reason is Reason.EXPORTER_ERROR
    assert result.detail == "exporter error: KeyError"
    assert "unexpected error while parsing" in caplog.text


def test_a_transport_error_passes_through_parsing_unchanged() -> None:
    result = parse_fetched(EndpointFetch("charging", reason=Reason.TIMEOUT, detail="no answer before the deadline"))
    assert (result.ok, result.reason, result.detail) == (False, Reason.TIMEOUT, "no answer before the deadline")


def vendor_sample(schema: dict[str, Any]) -> dict[str, Any]:
    """The example object the vendor's document gives for a schema, as its own tooling shows it (Swagger UI):
    each property's ``example``, else the first ``enum`` value, else ``true`` for a boolean."""
    sample = {}
    for name, prop in schema["properties"].items():
        if "example" in prop:
            sample[name] = prop["example"]
        elif "enum" in prop:
            sample[name] = prop["enum"][0]
        else:
            assert prop["type"] == "boolean", name
            sample[name] = True
    return sample


@pytest.mark.parametrize("endpoint", ["configuration", "transaction", "charging", "limits"])
def test_openapi_fixtures_are_the_vendors_exact_samples(endpoint: str) -> None:
    # A verbatim copy of shared/reference/pulsatrix-openapi.yaml (version 1.0.11) sits beside the fixtures.
    document = yaml.safe_load((OPENAPI / "pulsatrix-openapi.yaml").read_text())
    assert document["info"]["version"] == "1.0.11"
    fixture = json.loads((OPENAPI / f"{endpoint}.json").read_text())
    expected = vendor_sample(document["components"]["schemas"][endpoint])
    assert list(fixture.items()) == list(expected.items())  # same values, same order
