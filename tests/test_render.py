"""Our exposition writer is prometheus_client's, byte for byte, for the same families (text and OpenMetrics)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics import exposition as om_exposition

from exporter.config import ChargerConfig
from exporter.scrape.exposition import OPENMETRICS, TEXT, StaticCollector, exposition, gzip_accepted
from exporter.scrape.families import Family, build_info_families, device_families, health_families, reload_families
from exporter.scrape.health import ExporterHealth
from exporter.scrape.results import ENDPOINTS
from exporter.serve.app import own_registry
from tests.support.readings import result_from_bodies

generate_openmetrics = cast(Callable[[CollectorRegistry], bytes], om_exposition.generate_latest)
PAYLOADS = Path(__file__).parent / "fixtures" / "payloads"
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
ODD = ChargerConfig("odd-1", "http://192.0.2.9", labels=(("a", 'quote " back \\ {0} }{'), ("zone", "é\nx")))
GARAGE = ChargerConfig("garage", "http://192.0.2.1", labels=(("site", "home"),))


def families() -> list[Family]:
    bodies = {ep: (PAYLOADS / "openapi" / f"{ep}.json").read_bytes() for ep in ENDPOINTS}
    second = {ep: (PAYLOADS / "firmware2" / f"{ep}.json").read_bytes() for ep in ENDPOINTS}
    second["transaction"] = b'{"state": "Bay \\"7\\" \\\\ {x}", "pdName": 5, "usedPhasesSession": "1{0}"}'
    results = [result_from_bodies(GARAGE, bodies), result_from_bodies(ODD, second)]
    partial = result_from_bodies(GARAGE, {k: v for k, v in bodies.items() if k != "limits"})
    health = ExporterHealth([GARAGE, ODD])
    health.record([*results, partial], now=1_800_000_000.5)
    return device_families(results) + health_families(health, [GARAGE, ODD])


def reference(fams: list[Family], extra: CollectorRegistry | None = None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StaticCollector(fams))
    if extra is not None:
        registry.register(extra)
    return registry


@pytest.mark.parametrize("with_own_metrics", [False, True])
@pytest.mark.parametrize(
    ("accept", "content_type"),
    [("", TEXT), ("text/plain;version=0.0.4", TEXT), (PROMETHEUS_ACCEPT, OPENMETRICS)],
)
def test_byte_identical_to_prometheus_client(accept: str, content_type: str, with_own_metrics: bool) -> None:
    fams = families()
    own = own_registry() if with_own_metrics else None
    if with_own_metrics:  # as /metrics serves them: device, build info, reload status, then process and platform
        fams += [*build_info_families(), *reload_families(False, 1_800_000_000.25)]
    body, served_as = exposition(fams, accept, own)
    assert served_as == content_type
    # (process metrics such as CPU seconds move between two renders: compare without them)
    registry = reference(fams, own)
    expected = generate_openmetrics(registry) if served_as == OPENMETRICS else generate_latest(registry)
    assert _stable(body) == _stable(expected)
    assert b'a="quote \\" back \\\\ {0} }{"' in body  # escaped once, braces untouched
    assert b"pulsatrix_scrape_failures_total{" in body


def _stable(body: bytes) -> list[bytes]:
    return [line for line in body.splitlines() if not line.startswith((b"process_", b"python_gc"))]


def test_other_escapings_are_left_to_prometheus_client() -> None:
    fams = families()
    accept = "application/openmetrics-text;version=1.0.0;escaping=dots"
    body, served_as = exposition(fams, accept)
    assert "escaping=dots" in served_as
    assert b"pulsatrix__up" in body  # the dots escaping doubles underscores: prometheus_client's job, not ours


@pytest.mark.parametrize(
    ("accept_encoding", "gzipped"),
    [
        ("gzip", True),
        ("deflate, GZIP;q=0.5", True),
        ("gzip, deflate, br", True),  # what Prometheus and most clients send
        (" gzip ; q=1.0 ", True),
        ("gzip;level=9", True),  # parameters other than q change nothing, as in prometheus_client
        ("gzip;q=0", False),  # "not acceptable" (RFC 9110): the old substring test compressed anyway
        ("gzip;q=0.000, identity", False),
        ("x-gzip", False),  # another coding whose name contains "gzip"
        ("identity", False),
        ("", False),
    ],
)
def test_gzip_is_chosen_by_coding_and_q_value(accept_encoding: str, gzipped: bool) -> None:
    assert gzip_accepted(accept_encoding) is gzipped


@pytest.mark.parametrize("accept", ["", PROMETHEUS_ACCEPT])
def test_numbers_are_written_as_prometheus_client_writes_them(accept: str) -> None:
    """0 and 1 take a short cut past the library's formatter; -0.0 (a device's "-0.0 A") must not take it. Floats
    below 1e6 are written with repr: on both sides of that bound, the library's format and ours agree."""
    family = Family(GARAGE_SPEC)
    values = [0.0, -0.0, 1.0, 1, 0, True, -1.0, 2.5, 1e-7, 12345678.0, float("nan"), float("inf"), float("-inf")]
    values += [999999.9999999999, 1e6, 1000000.0000000001, 123456.7, -1234567.0, 1e16, 1.5e16, 5e-324, -1e300, 2, 10**6]
    for i, value in enumerate(values):
        family.label_texts.append(f'charger="c{i}"')
        family.values.append(value)
    for value in values:  # and without labels (the exporter's own metrics)
        family.label_texts.append("")
        family.values.append(value)
    body, served_as = exposition([family], accept)
    registry = reference([family])
    expected = generate_openmetrics(registry) if served_as == OPENMETRICS else generate_latest(registry)
    assert body == expected
    assert b'{charger="c1"} -0.0\n' in body


GARAGE_SPEC = families()[0].spec
