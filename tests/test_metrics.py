"""Metric building: the exact exposition for known payloads (golden files), and the rules behind it."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.catalogue import BY_NAME, CATALOGUE
from exporter.config import ChargerConfig
from exporter.scrape.exposition import StaticCollector
from exporter.scrape.families import device_families, health_families
from exporter.scrape.health import ExporterHealth
from exporter.scrape.results import ENDPOINTS, ChargerResult, EndpointResult, Reason
from tests.support.docs import documentation
from tests.support.readings import result_from_bodies

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = FIXTURES / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def bodies(name: str) -> dict[str, bytes]:
    return {ep: (FIXTURES / "payloads" / name / f"{ep}.json").read_bytes() for ep in ENDPOINTS}


def render(results: list[ChargerResult]) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StaticCollector(device_families(results)))
    return generate_latest(registry).decode()


def check_golden(name: str, text: str) -> None:
    """``text`` equals the committed file. UPDATE_GOLDEN=1 rewrites a file that differs, and the test still fails
    (review the diff, run again): a rewrite never passes by comparing the text with itself."""
    path = GOLDEN / f"{name}.prom"
    golden = path.read_text() if path.exists() else None
    if UPDATE and text != golden:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == golden, f"exposition differs from {path} (UPDATE_GOLDEN=1 rewrites it; review the diff)"


GARAGE = ChargerConfig(name="garage", url="http://192.0.2.1", labels=(("site", "home"),))
BAY = ChargerConfig(name="bay-12", url="http://192.0.2.2", labels=(("site", "depot-3"),))


def test_golden_exposition_for_openapi_sample_payloads() -> None:
    text = render([result_from_bodies(GARAGE, bodies("openapi"), duration=0.25)])
    check_golden("openapi", text)


def test_golden_exposition_for_second_firmware_generation() -> None:
    text = render([result_from_bodies(BAY, bodies("firmware2"), duration=0.125)])
    check_golden("firmware2", text)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    for (sample_name, sample_labels), sample_value in samples(text).items():
        if sample_name == name and all(dict(sample_labels).get(k) == v for k, v in labels.items()):
            return sample_value
    return None


def test_golden_parses_back_with_the_prometheus_parser() -> None:
    text = render([result_from_bodies(GARAGE, bodies("openapi"))])
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["pulsatrix_energy_imported_joules"].type == "counter"
    assert families["pulsatrix_charger_info"].type == "gauge"  # info metrics render as gauges in text 0.0.4
    assert value(text, "pulsatrix_energy_imported_joules_total", charger="garage") == pytest.approx(0.307999998 * 3.6e6)
    assert value(text, "pulsatrix_voltage_volts", phase="L2") == pytest.approx(234.0818024)
    assert value(text, "pulsatrix_api_limit_timeout_seconds") == 300.0
    # Every family the exporter wrote is in the catalogue, with the catalogue's type.
    for family in families.values():
        spec = next(s for s in CATALOGUE if family.name in (s.family, s.name))
        assert family.type == spec.type or (spec.type == "info" and family.type == "gauge")


def test_every_series_carries_charger_and_extra_labels() -> None:
    text = render([result_from_bodies(GARAGE, bodies("openapi")), result_from_bodies(BAY, bodies("firmware2"))])
    for (_, labels), _value in samples(text).items():
        label_map = dict(labels)
        assert label_map["charger"] in ("garage", "bay-12")
        assert label_map["site"] == {"garage": "home", "bay-12": "depot-3"}[label_map["charger"]]


def test_no_session_id_and_no_nan_sample_anywhere() -> None:
    text = render([result_from_bodies(GARAGE, bodies("openapi")), result_from_bodies(BAY, bodies("firmware2"))])
    assert "018ba9bc" not in text
    assert all(not math.isnan(v) for v in samples(text).values())


def test_nan_limits_are_omitted_and_active_is_zero() -> None:
    text = render([result_from_bodies(BAY, bodies("firmware2"))])
    assert value(text, "pulsatrix_api_current_limit_amperes") is None
    assert value(text, "pulsatrix_api_power_limit_watts") is None
    assert value(text, "pulsatrix_api_limit_active") == 0.0
    assert value(text, "pulsatrix_api_limit_enabled") == 1.0


def test_limit_active_is_absent_when_the_device_does_not_report_limits() -> None:
    text = render([result_from_bodies(BAY, {**bodies("firmware2"), "limits": b'{"enabled": false, "timeout": 5000}'})])
    assert value(text, "pulsatrix_api_limit_active") is None
    assert value(text, "pulsatrix_api_limit_enabled") == 0.0
    assert value(text, "pulsatrix_api_limit_timeout_seconds") == 5.0


def test_running_session_energy_uses_the_live_meter_and_has_no_end() -> None:
    text = render([result_from_bodies(BAY, bodies("firmware2"))])
    assert value(text, "pulsatrix_session_energy_joules") == pytest.approx(12.5 * 3.6e6)
    assert value(text, "pulsatrix_session_end_timestamp_seconds") is None
    assert value(text, "pulsatrix_session_start_timestamp_seconds") == 1699359776
    assert value(text, "pulsatrix_session_active") == 1.0
    # effectiveAmperageLimit reported in transaction by this firmware
    assert value(text, "pulsatrix_effective_current_limit_amperes") == 16.0


def test_ended_session_energy_uses_meter_stop() -> None:
    tx = b'{"startedTime": 100, "endedTime": 200, "meterStart": 1.5, "meterStop": 2.0}'
    text = render([result_from_bodies(GARAGE, {**bodies("openapi"), "transaction": tx})])
    assert value(text, "pulsatrix_session_energy_joules") == 1_800_000.0
    assert value(text, "pulsatrix_session_active") == 0.0
    assert value(text, "pulsatrix_session_end_timestamp_seconds") == 200.0


def test_no_session_yet_means_no_session_timestamps() -> None:
    tx = b'{"state": "Idle", "startedTime": 0, "endedTime": 0, "meterStart": 0, "meterStop": 0}'
    text = render([result_from_bodies(GARAGE, {**bodies("openapi"), "transaction": tx})])
    assert value(text, "pulsatrix_session_start_timestamp_seconds") is None
    assert value(text, "pulsatrix_session_end_timestamp_seconds") is None
    assert value(text, "pulsatrix_session_energy_joules") is None
    assert value(text, "pulsatrix_session_active") == 0.0


def test_only_reported_phases_appear() -> None:
    text = render([result_from_bodies(BAY, bodies("firmware2"))])
    phases = {dict(labels)["phase"] for (name, labels) in samples(text) if name == "pulsatrix_voltage_volts"}
    assert phases == {"L1"}
    ch = b'{"voltage": [230.0, null, 231.0]}'
    text = render([result_from_bodies(BAY, {**bodies("firmware2"), "charging": ch})])
    phases = {dict(labels)["phase"] for (name, labels) in samples(text) if name == "pulsatrix_voltage_volts"}
    assert phases == {"L1", "L3"}


def enum_values(text: str, name: str) -> dict[str, float]:
    label = "state" if name == "pulsatrix_state" else "status"
    return {dict(labels)[label]: v for (n, labels), v in samples(text).items() if n == name}


@pytest.mark.parametrize(
    ("field", "reported", "metric", "ones", "count"),
    [
        ("state", "Charging", "pulsatrix_state", {"Charging"}, 9),
        ("state", "CHARGING", "pulsatrix_state", {"CHARGING"}, 11),  # MQTT-style firmware keeps its own set
        ("state", "Preparing", "pulsatrix_state", {"Preparing"}, 10),  # unknown: passes through with 1
        ("vehicleStatus", "C2", "pulsatrix_vehicle_status", {"C2"}, 12),
        ("vehicleStatus", "C", "pulsatrix_vehicle_status", {"C"}, 8),  # prose-doc form
        ("chargeControllerStatus", "F", "pulsatrix_charge_controller_status", {"F"}, 8),
        ("chargeControllerStatus", "B2", "pulsatrix_charge_controller_status", {"B2"}, 12),
    ],
)
def test_enum_series_stay_continuous(field: str, reported: str, metric: str, ones: set[str], count: int) -> None:
    tx = f'{{"{field}": "{reported}"}}'.encode()
    text = render([result_from_bodies(GARAGE, {**bodies("openapi"), "transaction": tx})])
    values = enum_values(text, metric)
    assert {k for k, v in values.items() if v == 1.0} == ones
    assert len(values) == count
    assert sum(values.values()) == 1.0


def test_failed_endpoint_keeps_the_others() -> None:
    result = result_from_bodies(GARAGE, {k: v for k, v in bodies("openapi").items() if k != "charging"})
    text = render([result])
    assert value(text, "pulsatrix_up") == 0.0
    assert value(text, "pulsatrix_endpoint_up", endpoint="charging") == 0.0
    assert value(text, "pulsatrix_endpoint_up", endpoint="limits") == 1.0
    assert value(text, "pulsatrix_voltage_volts", phase="L1") is None
    assert value(text, "pulsatrix_state", state="Idle") == 1.0
    assert value(text, "pulsatrix_api_current_limit_amperes") == 15.5
    assert value(text, "pulsatrix_session_energy_joules") == 0.0  # ended session: meterStop - meterStart


def test_dead_charger_exports_only_health() -> None:
    dead = ChargerResult(
        charger=GARAGE,
        endpoints={ep: EndpointResult(ep, reason=Reason.CONNECT, detail="refused") for ep in ENDPOINTS},
        duration=0.001,
    )
    names = {name for (name, _) in samples(render([dead]))}
    assert names == {"pulsatrix_up", "pulsatrix_endpoint_up", "pulsatrix_scrape_duration_seconds"}


def health_text(health: ExporterHealth) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StaticCollector(health_families(health, [GARAGE])))
    return generate_latest(registry).decode()


def test_health_counters_start_at_zero_and_count_reasons() -> None:
    health = ExporterHealth([GARAGE])
    dead = ChargerResult(
        charger=GARAGE,
        endpoints={ep: EndpointResult(ep, reason=Reason.TIMEOUT, detail="") for ep in ENDPOINTS},
        duration=1.0,
    )
    before = health_text(health)
    # Polls and failed polls exist from the start at 0, so that increase() sees the first failure ...
    assert value(before, "pulsatrix_scrapes_total") == 0.0
    assert value(before, "pulsatrix_scrape_failures_total") == 0.0
    # ... while a series per endpoint and reason appears only once that error happened (not 24 zeros per charger).
    assert value(before, "pulsatrix_scrape_errors_total") is None
    assert value(before, "pulsatrix_last_error_timestamp_seconds") is None
    healthy = result_from_bodies(GARAGE, bodies("openapi"))
    health.record([dead, dead, healthy], now=1_800_000_000.0)
    after = health_text(health)
    assert value(after, "pulsatrix_scrapes_total") == 3.0
    assert value(after, "pulsatrix_scrape_failures_total") == 2.0
    assert value(after, "pulsatrix_scrape_errors_total", endpoint="limits", reason="timeout") == 2.0
    assert value(after, "pulsatrix_scrape_errors_total", endpoint="limits", reason="connect") is None
    assert len([n for (n, _) in samples(after) if n == "pulsatrix_scrape_errors_total"]) == 4
    assert value(after, "pulsatrix_last_error_timestamp_seconds", endpoint="limits", reason="timeout") == 1.8e9
    assert value(after, "pulsatrix_last_error_timestamp_seconds", reason="connect") is None


def test_one_failing_endpoint_is_one_failed_poll() -> None:
    health = ExporterHealth([GARAGE])
    health.record([result_from_bodies(GARAGE, {k: v for k, v in bodies("openapi").items() if k != "limits"})])
    text = health_text(health)
    assert value(text, "pulsatrix_scrapes_total") == 1.0
    assert value(text, "pulsatrix_scrape_failures_total") == 1.0
    assert value(text, "pulsatrix_scrape_errors_total", endpoint="limits", reason="timeout") == 1.0


def test_invalid_values_are_counted_per_field() -> None:
    health = ExporterHealth([GARAGE])
    ch = b'{"voltage": [230.0, null, "x"], "frequency": null}'
    health.record([result_from_bodies(GARAGE, {**bodies("openapi"), "charging": ch})])
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StaticCollector(health_families(health, [GARAGE])))
    text = generate_latest(registry).decode()
    assert value(text, "pulsatrix_invalid_values_total", endpoint="charging", field="voltage") == 2.0
    assert value(text, "pulsatrix_invalid_values_total", endpoint="charging", field="frequency") == 1.0


def test_catalogue_names_follow_conventions() -> None:
    for spec in CATALOGUE:
        assert spec.name.startswith("pulsatrix_")
        assert spec.name == spec.name.lower()
        assert (spec.type == "counter") == spec.name.endswith("_total")
        assert (spec.type == "info") == spec.name.endswith("_info")
        assert "charger" not in spec.labels
    assert BY_NAME["pulsatrix_energy_imported_joules_total"].type == "counter"


def test_readme_metric_table_is_generated_from_the_catalogue() -> None:
    from exporter.catalogue import markdown_table

    readme = documentation()
    start = readme.index("<!-- metrics-table:start")
    start = readme.index("\n", start) + 1
    end = readme.index("<!-- metrics-table:end -->")
    assert readme[start:end].strip() == markdown_table().strip(), "paste python -m exporter.catalogue in metrics.md"


def test_label_values_the_device_chooses_are_not_kept_between_scrapes() -> None:
    # Stable label texts (phases, endpoints, known states) are kept per charger; values a device chooses are not,
    # so a device sending a new state or session text every scrape cannot grow the exporter's memory: only the last
    # text per set of label names is (charger info, session info, an unknown state or status).
    from exporter.scrape.labels import charger_labels

    charger = ChargerConfig(name="chatty", url="http://192.0.2.3")
    for i in range(300):
        tx = json.dumps({"state": f"S{i}", "startReason": f"R{i}", "startedTime": 1}).encode()
        text = render([result_from_bodies(charger, {**bodies("openapi"), "transaction": tx})])
        assert value(text, "pulsatrix_state", state=f"S{i}") == 1.0
    assert len(charger_labels(charger)._texts) < 80
    assert len(charger_labels(charger)._last) <= 4
