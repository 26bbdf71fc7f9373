"""Bad input tried: arbitrary JSON and arbitrary mutations of real payloads, fed to the parsers, to the metric
building and rendering, and to a running exporter polling a fake charger over loopback.

Whatever a device sends: nothing raises, every exposition parses back with ``prometheus_client.parser`` (text and
OpenMetrics), no garbage becomes a sample (no NaN or ±Inf value, every label value short and printable), and our
renderer writes exactly what prometheus_client writes for the same families.

Hypothesis profiles (``HYPOTHESIS_PROFILE``): ``ci`` (the default: 10,300 examples in all, about 40 s on the
shared 2-core development machine) and ``long`` (ten times as many, for a run before a release):
``HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest tests/test_fuzz.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import threading
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.openmetrics import exposition as om_exposition
from prometheus_client.openmetrics import parser as om_parser
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter.catalogue import BY_NAME, CATALOGUE
from exporter.config import ChargerConfig, Config
from exporter.scrape import parse as parsing
from exporter.scrape.exposition import StaticCollector, render_families
from exporter.scrape.families import device_families
from exporter.scrape.parse import INPUTS, MAX_LABEL_LEN, PayloadError, parse_endpoint
from exporter.scrape.results import ENDPOINTS, Problem
from exporter.serve.app import create_app
from exporter.simulator import make_chargers
from tests.support.readings import result_from_bodies

# prometheus_client's OpenMetrics module is untyped
generate_openmetrics = cast(Callable[[CollectorRegistry], bytes], om_exposition.generate_latest)
parse_openmetrics = cast(Callable[[str], Iterator[Metric]], om_parser.text_string_to_metric_families)

settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
SCALE: Final = 10 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else 1


def examples(n: int) -> int:
    """``n`` examples in the ci profile, ten times as many in the long one."""
    return n * SCALE


PAYLOADS = Path(__file__).parent / "fixtures" / "payloads"

# Every field name the parsers know (from the table that drives them), the envelope's, and a stranger.
FIELDS: Final = sorted(
    {name for spec in CATALOGUE if spec.read for name in spec.read.names}
    | {name for source in INPUTS.values() for name in source.names}
    | {"topic", "message", "sessionId", "unknownNewField"}
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2**63, 1e308, -1e308, 5e-324, 3.6e302, 1.7e308]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=70),
    st.sampled_from(["NaN", "nan", "Infinity", "", " ", "111", "Idle", 'a"b', "a\\b", "x\n", "\x00", "é" * 70]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)),
    max_leaves=6,
)
objects = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=12)


def real_payloads() -> dict[str, list[dict[str, Any]]]:
    """Replies real devices send: the vendor's samples, the second firmware generation, simulated chargers."""
    out: dict[str, list[dict[str, Any]]] = {ep: [] for ep in ENDPOINTS}
    for name in ("openapi", "firmware2"):
        for ep in ENDPOINTS:
            out[ep].append(json.loads((PAYLOADS / name / f"{ep}.json").read_text()))
    for charger in make_chargers(3, now=1_800_000_000.0):
        out["configuration"].append(charger.configuration())
        out["transaction"].append(charger.transaction())
        out["charging"].append(charger.charging())
        out["limits"].append(json.loads(charger.limits_body().replace(b"NaN", b"null")))
    return out


REAL: Final = real_payloads()


def encode(obj: Any) -> bytes:
    return json.dumps(obj).encode()  # writes NaN/Infinity literals like the devices do


@st.composite
def mutated(draw: st.DrawFn, endpoint: str) -> bytes:
    """A real reply of this endpoint, mutated: values replaced, fields dropped or added, bytes changed."""
    obj = dict(draw(st.sampled_from(REAL[endpoint])))
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["replace", "drop", "add", "element"]))
        keys = sorted(obj)
        if action == "replace" and keys:
            obj[draw(st.sampled_from(keys))] = draw(json_values)
        elif action == "drop" and keys:
            obj.pop(draw(st.sampled_from(keys)))
        elif action == "add":
            obj[draw(st.sampled_from(FIELDS))] = draw(json_values)
        elif action == "element":
            arrays = [k for k in keys if isinstance(obj[k], list) and obj[k]]
            if arrays:
                key = draw(st.sampled_from(arrays))
                items = list(obj[key])
                items[draw(st.integers(0, len(items) - 1))] = draw(scalars)
                obj[key] = items
    body = encode(obj)
    if draw(st.booleans()):
        return body
    # byte-level damage: truncate, insert, or overwrite a few bytes (C-style nan, stray characters)
    where = draw(st.integers(0, len(body)))
    junk = draw(st.sampled_from([b"", b"nan", b"-inf", b"NaN", b",", b"\xff", b"}", b"[", b"\x00", b'"']))
    how = draw(st.sampled_from(["truncate", "insert", "overwrite"]))
    if how == "truncate":
        return body[:where]
    if how == "insert":
        return body[:where] + junk + body[where:]
    return body[:where] + junk + body[where + len(junk) :]


def replies_for(draw: st.DrawFn) -> dict[str, bytes]:
    replies = {}
    for ep in ENDPOINTS:
        kind = draw(st.sampled_from(["mutated", "mutated", "object", "bytes", "missing"]))
        if kind == "mutated":
            replies[ep] = draw(mutated(ep))
        elif kind == "object":
            replies[ep] = encode(draw(objects))
        elif kind == "bytes":
            replies[ep] = draw(st.binary(max_size=64))
    return replies


@st.composite
def all_replies(draw: st.DrawFn) -> dict[str, bytes]:
    return replies_for(draw)


label_values = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20)
chargers = st.builds(
    ChargerConfig,
    name=st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.\-]{0,20}\Z"),
    url=st.just("http://192.0.2.1"),
    labels=st.lists(st.tuples(st.sampled_from(["site", "a", "zone", "b_1"]), label_values), max_size=3).map(
        lambda pairs: tuple(sorted(dict(pairs).items()))
    ),
)


def check_exposition(text: str, openmetrics: bool = False) -> int:
    """Parse an exposition back as Prometheus would; no NaN/±Inf sample, every label value bounded and printable.
    Returns the number of samples."""
    families = list(parse_openmetrics(text) if openmetrics else parse_text(text))
    count = 0
    for family in families:
        assert family.name in {s.family for s in CATALOGUE} | {s.name for s in CATALOGUE} or family.name.startswith(
            ("process_", "python_")
        ), family.name
        for sample in family.samples:
            count += 1
            assert math.isfinite(sample.value), sample
            for name, value in sample.labels.items():
                if name == "charger" or name in ("site", "a", "zone", "b_1"):
                    continue  # from the config, not from the device
                assert len(value) <= MAX_LABEL_LEN and value.isprintable(), sample
    return count


# --- the parsers ---


@settings(max_examples=examples(2000))
@given(objects, st.sampled_from(ENDPOINTS))
def test_any_object_parses_without_crashing(payload: dict[str, Any], endpoint: str) -> None:
    check_parsed(endpoint, encode(payload))


@settings(max_examples=examples(3500))
@given(st.data())
def test_any_mutation_of_a_real_payload_parses_without_crashing(data: st.DataObject) -> None:
    endpoint = data.draw(st.sampled_from(ENDPOINTS))
    check_parsed(endpoint, data.draw(mutated(endpoint)))


@settings(max_examples=examples(3000))
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_rejected_cleanly(body: bytes) -> None:
    check_parsed("charging", body)


def check_parsed(endpoint: str, body: bytes) -> None:
    try:
        parsed = parse_endpoint(endpoint, body)
    except PayloadError as exc:
        assert exc.reason in ("invalid_json", "invalid_payload")
        return
    for key, value in parsed.values.items():
        assert key in BY_NAME or key in INPUTS
        if isinstance(value, float):
            assert not math.isinf(value), key  # NaN only for a limit that is not set
            assert not math.isnan(value) or BY_NAME[key].read.kind == "setting"  # type: ignore[union-attr]
        elif isinstance(value, str):
            assert 0 < len(value) <= MAX_LABEL_LEN and value.isprintable()
        elif isinstance(value, tuple):
            assert all(v is None or math.isfinite(v) for v in value)
    assert all(len(p.field) < 40 for p in parsed.problems)


# --- metric building and rendering ---


@settings(max_examples=examples(1200))
@given(all_replies(), chargers)
def test_any_replies_render_valid_expositions_identical_to_prometheus_client(
    replies: dict[str, bytes], charger: ChargerConfig
) -> None:
    families = device_families([result_from_bodies(charger, replies)])
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StaticCollector(families))
    text = render_families(families, openmetrics=False)
    assert text.encode() == generate_latest(registry)
    openmetrics = render_families(families, openmetrics=True) + "# EOF\n"
    assert openmetrics.encode() == generate_openmetrics(registry)
    assert check_exposition(text) == check_exposition(openmetrics, openmetrics=True) >= 6


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
            assert parsed.values == {}
            assert [p.field for p in parsed.problems] == ["frequency"]


# --- a running exporter polling a fake charger over loopback ---


@dataclass
class Rig:
    """An exporter and a fake charger on loopback, in a thread of their own (Hypothesis drives the test
    synchronously); the charger answers each endpoint with whatever ``replies`` holds, or 404."""

    replies: dict[str, bytes] = field(default_factory=dict)
    exporter_url: str = ""
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)

    async def start(self) -> list[web.AppRunner]:
        async def serve(request: web.Request) -> web.Response:
            body = self.replies.get(request.match_info["ep"])
            if body is None:
                raise web.HTTPNotFound()
            return web.Response(body=body, content_type="application/json")

        device = web.Application()
        device.router.add_get("/api/v1/{ep}", serve)
        device_runner = web.AppRunner(device)
        await device_runner.setup()
        device_site = web.TCPSite(device_runner, "127.0.0.1", 0)
        await device_site.start()
        port = device_runner.addresses[0][1]
        charger = ChargerConfig("fuzz", f"http://127.0.0.1:{port}", timeout=5.0, labels=(("site", 'a "b" \\c'),))
        exporter_runner = web.AppRunner(create_app(Config(chargers=(charger,))))
        await exporter_runner.setup()
        await web.TCPSite(exporter_runner, "127.0.0.1", 0).start()
        self.exporter_url = f"http://127.0.0.1:{exporter_runner.addresses[0][1]}"
        return [exporter_runner, device_runner]


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    rig = Rig()
    ready = threading.Event()
    runners: list[web.AppRunner] = []

    def run() -> None:
        asyncio.set_event_loop(rig.loop)
        runners.extend(rig.loop.run_until_complete(rig.start()))
        ready.set()
        rig.loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield rig
    finally:

        async def stop() -> None:
            for runner in runners:
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), rig.loop).result(10)
        rig.loop.call_soon_threadsafe(rig.loop.stop)
        thread.join(10)
        with contextlib.suppress(RuntimeError):
            rig.loop.close()


def scrape(url: str, headers: Mapping[str, str]) -> tuple[int, str, str]:
    request = urllib.request.Request(url, headers=dict(headers))  # noqa: S310 - loopback only
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback only
        return response.status, response.headers["Content-Type"], response.read().decode()


PROMETHEUS_ACCEPT: Final = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


@settings(max_examples=examples(600), suppress_health_check=list(HealthCheck))
@given(all_replies(), st.booleans(), st.sampled_from(["/probe?target=fuzz", "/metrics"]))
def test_a_running_exporter_survives_any_replies(rig: Rig, replies: dict[str, bytes], om: bool, path: str) -> None:
    rig.replies = replies
    status, content_type, text = scrape(rig.exporter_url + path, {"Accept": PROMETHEUS_ACCEPT if om else ""})
    assert status == 200
    assert content_type.startswith("application/openmetrics-text" if om else "text/plain")
    check_exposition(text, openmetrics=om)
    up = [line for line in text.splitlines() if line.startswith("pulsatrix_up{")]
    assert len(up) == 1
    expected_up = all(ep in replies for ep in ENDPOINTS) and all(_usable(ep, body) for ep, body in replies.items())
    assert up[0].endswith(" 1.0" if expected_up else " 0.0"), (up, replies)


def _usable(endpoint: str, body: bytes) -> bool:
    try:
        parse_endpoint(endpoint, body)
    except PayloadError:
        return False
    return True


_FIELD_NAMES: Final = {e: sorted({n for _, s in parsing.FIELDS[e] for n in s.names}) for e in ENDPOINTS}
_ANY_VALUE = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.booleans(),
    st.none(),
    st.text(max_size=300),
    st.sampled_from(["  Charging ", "", " ", "a\x00b", "x" * 500]),
    st.lists(
        st.one_of(st.floats(), st.integers(min_value=-(10**400), max_value=10**400), st.text(max_size=3)), max_size=5
    ),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@given(endpoint=st.sampled_from(ENDPOINTS), data=st.data())
@settings(max_examples=examples(1500))
def test_the_inline_reading_of_usual_values_agrees_with_the_general_reader(endpoint: str, data: st.DataObject) -> None:
    """parse_values reads a usable value inline for speed and leaves the rest to _read: together they must give
    exactly what _read alone gives, value for value and problem for problem."""
    names = _FIELD_NAMES[endpoint]
    obj = data.draw(st.dictionaries(st.sampled_from(names), _ANY_VALUE, max_size=len(names)))
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    for key, source in parsing.FIELDS[endpoint]:
        parsing._read(obj, source, values, key, problems)
    parsed = parsing.parse_values(endpoint, obj)
    assert repr(parsed.values) == repr(values)  # repr: NaN (a setting not set) equals itself there
    assert parsed.problems == tuple(problems)
