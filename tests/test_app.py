"""The HTTP app end to end on loopback: simulated chargers behind aiohttp_server, the exporter behind aiohttp_client."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import gzip
import logging
import os
import re
import socket
import time
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver
from aiohttp.test_utils import TestServer

from exporter import __version__
from exporter.config import BasicAuth, BearerAuth, ChargerConfig, Config, Secret
from exporter.scrape.results import ENDPOINTS
from exporter.serve.app import EXPORTER, create_app
from exporter.simulator import SimAuth
from tests.support.clock import LoopClock
from tests.support.fleet import ClientFactory, MakeClient, MakeFleet, ServerFactory, SimulatedFleet
from tests.support.samples import chargers_in, get, parse, scrape
from tests.support.servers import free_port

OPENAPI = Path(__file__).parent / "fixtures" / "payloads" / "openapi"
GOLDEN = Path(__file__).parent / "fixtures" / "golden" / "openapi.prom"


async def recording_server(aiohttp_server: ServerFactory) -> tuple[TestServer, list[str]]:
    """A server that records every path it is asked for: proof that the exporter did not go there."""
    hits: list[str] = []

    async def record(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/{tail:.*}", record)
    return await aiohttp_server(app), hits


async def test_all_chargers_exported_with_own_metrics(fleet: SimulatedFleet, exporter_client: MakeClient) -> None:
    client = await exporter_client(fleet.config({"garage": {"site": "home"}}))
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = parse(await response.text())
    for name in fleet.names:
        assert get(samples, "pulsatrix_up", charger=name) == 1.0
        assert get(samples, "pulsatrix_voltage_volts", charger=name, phase="L1") is not None
        assert get(samples, "pulsatrix_grid_frequency_hertz", charger=name) is not None
    assert get(samples, "pulsatrix_up", charger="garage", site="home") == 1.0
    assert get(samples, "pulsatrix_exporter_build_info", version=__version__) == 1.0
    assert get(samples, "process_resident_memory_bytes") is not None


async def test_openmetrics_is_negotiated(fleet: SimulatedFleet, exporter_client: MakeClient) -> None:
    client = await exporter_client(fleet.config())
    response = await client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert (await response.text()).endswith("# EOF\n")


async def test_gzip_when_asked(fleet: SimulatedFleet, exporter_client: MakeClient) -> None:
    client = await exporter_client(fleet.config())
    zipped = await client.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert get(parse(await zipped.text()), "pulsatrix_up", charger="garage") == 1.0  # decoded by the client
    plain = await client.get("/metrics", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers
    refused = await client.get("/-/metrics", headers={"Accept-Encoding": "br, gzip;q=0"})  # gzip not acceptable
    assert "Content-Encoding" not in refused.headers
    assert (await refused.read()).startswith(b"# HELP pulsatrix_exporter_build_info ")


async def test_dead_slow_and_broken_chargers_do_not_break_the_others(
    make_fleet: MakeFleet, exporter_client: MakeClient
) -> None:
    fleet = await make_fleet(5)
    hanging, failing, broken, healthy, unstable = fleet.names
    fleet.set_fault(hanging, "hang")
    fleet.set_fault(failing, "http_500")
    fleet.set_fault(broken, "invalid_json")
    fleet.set_fault(unstable, "disconnect")
    refused_port = free_port()  # nothing listens there any more
    config = fleet.config()
    chargers = tuple(ChargerConfig(c.name, c.url, timeout=1.0) for c in config.chargers)
    chargers += (ChargerConfig("refused", f"http://127.0.0.1:{refused_port}", timeout=1.0),)
    client = await exporter_client(Config(chargers=chargers))

    samples = await scrape(client)

    assert get(samples, "pulsatrix_up", charger=healthy) == 1.0
    for name in (hanging, failing, broken, unstable, "refused"):
        assert get(samples, "pulsatrix_up", charger=name) == 0.0, name
        assert get(samples, "pulsatrix_voltage_volts", charger=name) is None
    # the healthy charger's values are all there
    assert get(samples, "pulsatrix_voltage_volts", charger=healthy, phase="L1") is not None
    assert get(samples, "pulsatrix_energy_imported_joules_total", charger=healthy) is not None
    assert (
        sum(v for (n, labels), v in samples.items() if n == "pulsatrix_state" and (("charger", healthy) in labels)) == 1
    )
    # each failure is counted with its reason, for every endpoint
    expected = {
        hanging: "timeout",
        failing: "http_status",
        broken: "invalid_json",
        unstable: "connect",
        "refused": "connect",
    }
    for name, reason in expected.items():
        for endpoint in ("configuration", "transaction", "charging", "limits"):
            assert get(samples, "pulsatrix_scrape_errors_total", charger=name, endpoint=endpoint, reason=reason) == 1.0
    assert get(samples, "pulsatrix_scrape_errors_total", charger=healthy, endpoint="charging", reason="timeout") is None
    assert get(samples, "pulsatrix_scrape_failures_total", charger=healthy) == 0.0
    assert get(samples, "pulsatrix_scrape_failures_total", charger=hanging) == 1.0
    # the hanging charger cost no more than its own deadline
    duration = get(samples, "pulsatrix_scrape_duration_seconds", charger=hanging)
    assert duration is not None and 0.9 < duration < 1.5


async def test_scrape_timeout_header_caps_the_charger_deadline(
    fleet: SimulatedFleet, exporter_client: MakeClient, loop_clock: LoopClock
) -> None:
    """On the loop clock (tests/support/clock.py): the deadline is moved past, so a busy machine cannot stretch it."""
    fleet.set_fault("garage", "hang")
    config = fleet.config()
    slow = Config(chargers=tuple(ChargerConfig(c.name, c.url, timeout=60.0) for c in config.chargers))
    client = await exporter_client(slow)
    samples = await loop_clock.run(scrape(client, **{"X-Prometheus-Scrape-Timeout-Seconds": "1.5"}))
    duration = get(samples, "pulsatrix_scrape_duration_seconds", charger="garage")
    assert duration is not None and 1.0 < duration < 1.3  # 1.5 s minus the rendering margin (25 %), not 60 s
    # cut off by the scrape's budget, not by its own 60 s: the exporter's reason, not the charger's timeout
    errors = get(samples, "pulsatrix_scrape_errors_total", charger="garage", endpoint="limits", reason="scrape_timeout")
    assert errors == 1.0
    assert get(samples, "pulsatrix_scrape_errors_total", charger="garage", reason="timeout") is None
    assert get(samples, "pulsatrix_up", charger="carport") == 1.0


async def test_a_tiny_scrape_timeout_header_is_taken_as_one_second(
    fleet: SimulatedFleet, exporter_client: MakeClient
) -> None:
    """Anyone can send the header: 0.01 s must not turn a charger that answers in 0.3 s into a failure."""
    fleet.sim.chargers["garage"].fault_seconds = 0.3
    fleet.set_fault("garage", "latency")
    client = await exporter_client(fleet.config())
    samples = await scrape(client, **{"X-Prometheus-Scrape-Timeout-Seconds": "0.01"})
    assert get(samples, "pulsatrix_up", charger="garage") == 1.0
    assert get(samples, "pulsatrix_scrape_failures_total", charger="garage") == 0.0


async def test_one_failing_endpoint_keeps_the_other_endpoints(
    fleet: SimulatedFleet, exporter_client: MakeClient
) -> None:
    fleet.set_fault("garage", "http_500", ("limits",))
    client = await exporter_client(fleet.config())
    samples = await scrape(client)
    assert get(samples, "pulsatrix_up", charger="garage") == 0.0
    assert get(samples, "pulsatrix_endpoint_up", charger="garage", endpoint="limits") == 0.0
    assert get(samples, "pulsatrix_endpoint_up", charger="garage", endpoint="charging") == 1.0
    assert get(samples, "pulsatrix_voltage_volts", charger="garage", phase="L1") is not None
    assert get(samples, "pulsatrix_charger_info", charger="garage") == 1.0
    assert get(samples, "pulsatrix_api_limit_timeout_seconds", charger="garage") is None


async def test_probe_returns_only_the_target(fleet: SimulatedFleet, exporter_client: MakeClient) -> None:
    client = await exporter_client(fleet.config())
    samples = await scrape(client, "/probe?target=carport")
    assert chargers_in(samples) == {"carport"}
    assert get(samples, "pulsatrix_up", charger="carport") == 1.0
    assert get(samples, "pulsatrix_scrape_errors_total", charger="carport") is None  # no error happened
    assert get(samples, "pulsatrix_scrapes_total", charger="carport") == 1.0
    assert get(samples, "pulsatrix_exporter_build_info") is None  # exporter-level metrics live on /metrics


@pytest.mark.parametrize(
    "target", ["nope", "http://{other}/", "{other}", "http://{other}/garage", "../garage", "garage ", "GARAGE"]
)
async def test_probe_never_fetches_an_unconfigured_target(
    fleet: SimulatedFleet, exporter_client: MakeClient, aiohttp_server: ServerFactory, target: str
) -> None:
    other_server, hits = await recording_server(aiohttp_server)
    client = await exporter_client(fleet.config())
    before = fleet.stats.requests
    response = await client.get("/probe", params={"target": target.format(other=f"127.0.0.1:{other_server.port}")})
    assert response.status == 404
    assert "not a configured charger name" in await response.text()
    assert fleet.stats.requests == before
    assert hits == []


async def test_probe_without_target_is_a_bad_request(fleet: SimulatedFleet, exporter_client: MakeClient) -> None:
    client = await exporter_client(fleet.config())
    response = await client.get("/probe")
    assert response.status == 400
    assert fleet.stats.requests == 0


async def test_golden_exposition_over_http(aiohttp_server: ServerFactory, exporter_client: MakeClient) -> None:
    """A charger that serves the OpenAPI sample payloads gives exactly the golden exposition on /probe."""

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=(OPENAPI / f"{request.match_info['ep']}.json").read_bytes())

    device = web.Application()
    device.router.add_get("/api/v1/{ep}", serve)
    server = await aiohttp_server(device)
    charger = ChargerConfig("garage", str(server.make_url("")).rstrip("/"), labels=(("site", "home"),))
    client = await exporter_client(Config(chargers=(charger,)))
    response = await client.get("/probe", params={"target": "garage"})
    text = await response.text()
    golden = GOLDEN.read_text()
    strip = ("pulsatrix_scrape_duration_seconds{",)
    health = ("scrape_errors", "invalid_values", "scrapes_total", "scrape_failures", "reading_age")
    probe_device = [ln for ln in text.splitlines() if not ln.startswith(strip) and not any(h in ln for h in health)]
    assert probe_device == [ln for ln in golden.splitlines() if not ln.startswith(strip)]
    assert 'pulsatrix_reading_age_seconds{charger="garage",site="home"} 0.0' in text.splitlines()


@pytest.mark.parametrize("kind", ["basic", "bearer"])
async def test_auth_headers_are_sent_as_configured(
    make_fleet: MakeFleet, exporter_client: MakeClient, kind: str
) -> None:
    sim_auth = SimAuth(basic=("exporter", "pa:ss wörd")) if kind == "basic" else SimAuth(bearer="t0k3n")
    fleet = await make_fleet(1, auth=sim_auth)
    auth: BasicAuth | BearerAuth = (
        BasicAuth("exporter", Secret("pa:ss wörd")) if kind == "basic" else BearerAuth(Secret("t0k3n"))
    )
    base = fleet.config().chargers[0]
    good = ChargerConfig(base.name, base.url, auth=auth)
    client = await exporter_client(Config(chargers=(good,)))
    assert get(await scrape(client), "pulsatrix_up", charger=base.name) == 1.0


async def test_every_request_says_what_it_is_and_carries_no_cookie(
    aiohttp_server: ServerFactory, exporter_client: MakeClient
) -> None:
    """Accept and User-Agent on every request, with or without credentials; Authorization only where configured;
    a cookie a device sets is never sent back (the exporter keeps no state between polls)."""
    seen: list[tuple[str, dict[str, str]]] = []

    async def serve(request: web.Request) -> web.Response:
        seen.append((request.match_info["charger"], dict(request.headers)))
        response = web.Response(body=(OPENAPI / f"{request.match_info['ep']}.json").read_bytes())
        response.set_cookie("session", "abc")
        return response

    device = web.Application()
    device.router.add_get("/{charger}/api/v1/{ep}", serve)
    server = await aiohttp_server(device)
    base = f"http://localhost:{server.port}"  # a host name: a cookie jar would keep its cookies
    chargers = (ChargerConfig("open", f"{base}/open"), ChargerConfig("locked", f"{base}/locked",
                auth=BearerAuth(Secret("t0k3n"))))  # fmt: skip
    client = await exporter_client(Config(chargers=chargers))
    for _ in range(2):
        assert get(await scrape(client), "pulsatrix_up", charger="locked") == 1.0
    assert len(seen) == 2 * 2 * len(ENDPOINTS)
    for charger, headers in seen:
        assert headers["Accept"] == "application/json"
        assert headers["User-Agent"] == f"pulsatrix-exporter/{__version__}"
        assert headers.get("Authorization") == ("Bearer t0k3n" if charger == "locked" else None)
        assert "Cookie" not in headers


async def test_wrong_or_missing_credentials_are_unauthorized(
    make_fleet: MakeFleet, exporter_client: MakeClient
) -> None:
    fleet = await make_fleet(2, auth=SimAuth(bearer="right-token"))
    first, second = fleet.config().chargers
    wrong = ChargerConfig(first.name, first.url, auth=BearerAuth(Secret("wrong-token")))
    client = await exporter_client(Config(chargers=(wrong, second)))
    samples = await scrape(client)
    for name in (first.name, second.name):
        assert get(samples, "pulsatrix_up", charger=name) == 0.0
        assert (
            get(samples, "pulsatrix_scrape_errors_total", charger=name, endpoint="charging", reason="unauthorized")
            == 1.0
        )


async def test_secrets_never_leak_into_logs_metrics_or_pages(
    make_fleet: MakeFleet, exporter_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fleet = await make_fleet(2, auth=SimAuth(basic=("exporter", "right-password")))
    first, second = fleet.config().chargers
    secrets = ["wrong-password-123", "bearer-token-456"]
    chargers = (
        ChargerConfig(first.name, first.url, auth=BasicAuth("exporter", Secret(secrets[0]))),
        ChargerConfig(second.name, second.url, auth=BearerAuth(Secret(secrets[1]))),
    )
    client = await exporter_client(Config(chargers=chargers))
    pages = []
    for path in ("/metrics", f"/probe?target={first.name}", "/", "/sd", "/metrics"):
        response = await client.get(path)
        pages.append(await response.text())
    everything = "\n".join(pages) + caplog.text + repr(client.app[EXPORTER]) + repr(client.app[EXPORTER].fleet.config)
    assert "unauthorized" in everything  # the failure itself is visible ...
    forms = [*secrets, base64.b64encode(f"exporter:{secrets[0]}".encode()).decode()]
    for form in forms:  # ... the credentials are not, in no form
        assert form not in everything


async def test_failures_are_logged_once_and_recovery_is_logged(
    fleet: SimulatedFleet, exporter_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="exporter")
    fleet.set_fault("garage", "http_500", ("charging",))
    client = await exporter_client(fleet.config())
    for _ in range(3):
        await scrape(client)
    failures = [r for r in caplog.records if "garage failing" in r.getMessage()]
    assert [r.getMessage() for r in failures] == [
        "charger garage failing: http_status on charging (HTTP 500 Internal Server Error)"
    ]
    assert failures[0].levelno == logging.WARNING
    fleet.set_fault("garage", "none")
    for _ in range(2):
        await scrape(client)
    recovered = [r.getMessage() for r in caplog.records if "garage recovered" in r.getMessage()]
    assert recovered == ["charger garage recovered: every endpoint answers again"]


async def test_malformed_values_counted_and_logged_once_per_field(
    aiohttp_server: ServerFactory, exporter_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="exporter")

    async def serve(request: web.Request) -> web.Response:
        ep = request.match_info["ep"]
        if ep == "charging":
            return web.Response(body=b'{"voltage": [230.0, null, 231.0], "frequency": "fifty", "lastActivePower": 10}')
        return web.Response(body=(OPENAPI / f"{ep}.json").read_bytes())

    device = web.Application()
    device.router.add_get("/api/v1/{ep}", serve)
    server = await aiohttp_server(device)
    client = await exporter_client(Config(chargers=(ChargerConfig("odd", str(server.make_url("")).rstrip("/")),)))
    for _ in range(2):
        samples = await scrape(client)
    assert get(samples, "pulsatrix_up", charger="odd") == 1.0  # the reply is still usable
    assert get(samples, "pulsatrix_active_power_watts", charger="odd") == 10.0
    assert get(samples, "pulsatrix_voltage_volts", charger="odd", phase="L3") == 231.0
    assert get(samples, "pulsatrix_voltage_volts", charger="odd", phase="L2") is None
    assert get(samples, "pulsatrix_invalid_values_total", charger="odd", endpoint="charging", field="voltage") == 2.0
    assert get(samples, "pulsatrix_invalid_values_total", charger="odd", endpoint="charging", field="frequency") == 2.0
    logged = [r.getMessage() for r in caplog.records if "odd: charging." in r.getMessage()]
    assert sorted(logged) == [
        "charger odd: charging.frequency skipped: expected a number, got a string "
        "(logged once; counted in pulsatrix_invalid_values_total)",
        "charger odd: charging.voltage skipped: null (logged once; counted in pulsatrix_invalid_values_total)",
    ]


async def test_redirects_are_not_followed(aiohttp_server: ServerFactory, exporter_client: MakeClient) -> None:
    other_server, elsewhere_hits = await recording_server(aiohttp_server)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(str(other_server.make_url(request.path)))

    device = web.Application()
    device.router.add_get("/api/v1/{ep}", redirect)
    server = await aiohttp_server(device)
    client = await exporter_client(Config(chargers=(ChargerConfig("r", str(server.make_url("")).rstrip("/")),)))
    samples = await scrape(client)
    assert get(samples, "pulsatrix_scrape_errors_total", charger="r", endpoint="limits", reason="http_status") == 1.0
    assert elsewhere_hits == []


async def test_landing_page_uses_the_dashboards_words(fleet: SimulatedFleet, exporter_client: MakeClient) -> None:
    fleet.set_fault("carport", "http_500", ("limits",))  # one endpoint fails: Partial, not Down
    fleet.set_fault("visitor-bay", "http_503", ENDPOINTS)  # none answers: Down
    client = await exporter_client(fleet.config({"garage": {"site": "<home>"}}))
    page = await (await client.get("/")).text()
    assert f"version {__version__}" in page
    assert "<p class=\"summary\">3 chargers: 0 up, 0 partial, 0 down, 3 unmonitored</p>" in page
    assert page.count("title='not polled yet'>Unmonitored</td>") == 3
    await scrape(client)
    page = await (await client.get("/")).text()
    assert "<p class=\"summary\">3 chargers: 1 up, 1 partial, 1 down</p>" in page
    rows = {row.split("</a>")[0].rsplit(">", 1)[1]: row for row in page.split("<tr>")[2:]}
    assert "title='every endpoint answered'>Up</td>" in rows["garage"]
    assert "title='some endpoints fail'>Partial</td>" in rows["carport"]
    assert "title='no endpoint answers'>Down</td>" in rows["visitor-bay"]
    assert list(rows) == ["visitor-bay", "carport", "garage"]  # worst first, as the dashboard's table
    assert "<li><b>limits</b>: http_status: HTTP 500 Internal Server Error</li>" in rows["carport"]
    for endpoint in ENDPOINTS:  # every failing endpoint's error, not only the last one recorded
        assert f"<li><b>{endpoint}</b>: http_status: HTTP 503 Service Unavailable</li>" in rows["visitor-bay"]
    assert re.search(r"Rendered <time datetime=\"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)\">\1</time>", page)
    assert "<span class='label'>site=&lt;home&gt;</span>" in page  # escaped
    assert "Demo mode" not in page
    for link in ('href="metrics"', 'href="sd"', 'href="-/healthy"', "href='probe?target=garage'"):
        assert link in page
    assert fleet.base_url not in page  # charger URLs are not shown

    fleet.set_fault("carport", "none")
    await scrape(client)
    carport = (await (await client.get("/")).text()).split("probe?target=carport")[1].split("</tr>")[0]
    assert "title='every endpoint answered'>Up</td>" in carport
    assert "last: limits: http_status: HTTP 500 Internal Server Error, <time datetime=" in carport  # and when


async def test_landing_page_says_when_its_data_is_simulated(fleet: SimulatedFleet, exporter_client: MakeClient) -> None:
    client = await exporter_client(fleet.config({name: {"simulated": "true"} for name in fleet.names}))
    page = await (await client.get("/")).text()
    assert "<p class='demo' role='alert'>Demo mode: the chargers on this page are simulated" in page


async def test_health_ready_and_service_discovery(fleet: SimulatedFleet, exporter_client: MakeClient) -> None:
    client = await exporter_client(fleet.config({"garage": {"site": "home"}}))
    assert (await client.get("/-/healthy")).status == 200
    assert (await client.get("/-/ready")).status == 200
    sd = await (await client.get("/sd")).json()
    assert sd[0] == {
        "targets": ["garage"],
        "labels": {"__meta_pulsatrix_charger": "garage", "__meta_pulsatrix_label_site": "home"},
    }
    assert [group["targets"] for group in sd] == [["garage"], ["carport"], ["visitor-bay"]]
    assert fleet.stats.requests == 0  # none of these touch a charger


async def test_one_session_for_the_app_life(fleet: SimulatedFleet, exporter_client: MakeClient) -> None:
    client = await exporter_client(fleet.config())
    session = client.app[EXPORTER].fleet.session
    assert session is not None
    await scrape(client)
    await scrape(client, "/probe?target=garage")
    assert client.app[EXPORTER].fleet.session is session
    open_during_scrapes = session.closed is False
    await client.close()
    assert open_during_scrapes
    assert session.closed
    assert client.app[EXPORTER].ready is False


async def test_removed_charger_leaves_no_stale_device_series(
    fleet: SimulatedFleet, exporter_client: MakeClient
) -> None:
    """Device families are rebuilt every scrape: a charger whose data vanishes has no leftover series."""
    client = await exporter_client(fleet.config())
    assert get(await scrape(client), "pulsatrix_voltage_volts", charger="garage") is not None
    fleet.set_fault("garage", "http_500")
    samples = await scrape(client)
    assert get(samples, "pulsatrix_voltage_volts", charger="garage") is None
    assert get(samples, "pulsatrix_state", charger="garage") is None


async def test_a_reply_arriving_in_pieces_is_read_to_the_end(
    aiohttp_server: ServerFactory, exporter_client: MakeClient
) -> None:
    """Embedded HTTP servers often write a reply in several segments (or chunks)."""

    async def serve(request: web.Request) -> web.StreamResponse:
        body = (OPENAPI / f"{request.match_info['ep']}.json").read_bytes()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if request.match_info["ep"] != "charging":
            response.content_length = len(body)  # the others: Content-Length; charging: chunked
        await response.prepare(request)
        for i in range(0, len(body), 16):
            await response.write(body[i : i + 16])
            await asyncio.sleep(0.005)
        await response.write_eof()
        return response

    device = web.Application()
    device.router.add_get("/api/v1/{ep}", serve)
    server = await aiohttp_server(device)
    client = await exporter_client(Config(chargers=(ChargerConfig("slowpoke", str(server.make_url("")).rstrip("/")),)))
    samples = await scrape(client)
    assert get(samples, "pulsatrix_up", charger="slowpoke") == 1.0
    assert get(samples, "pulsatrix_voltage_volts", charger="slowpoke", phase="L3") == 234.2052612


async def test_a_body_over_the_cap_is_refused_however_it_is_framed(
    aiohttp_server: ServerFactory, exporter_client: MakeClient
) -> None:
    """1 MiB per reply, whether the device announces more (Content-Length: refused unread), streams more (chunked)
    or sends a small gzip body that expands to more; a gzip body under the cap is read like any other."""
    big = b'{"pad": "' + b"0" * (2 << 20) + b'"}'

    async def serve(request: web.Request) -> web.StreamResponse:
        ep, charger = request.match_info["ep"], request.match_info["charger"]
        body = (OPENAPI / f"{ep}.json").read_bytes()
        if charger == "zipped" or ep == "transaction":
            response = web.Response(body=gzip.compress(big if charger == "big" else body))
            response.headers["Content-Encoding"] = "gzip"
            return response
        if ep == "configuration" and charger == "big":
            return web.Response(body=big)
        if ep == "charging" and charger == "big":
            chunked = web.StreamResponse()
            await chunked.prepare(request)
            for i in range(0, len(big), 64 << 10):
                await chunked.write(big[i : i + (64 << 10)])
            await chunked.write_eof()
            return chunked
        return web.Response(body=body)

    device = web.Application()
    device.router.add_get("/{charger}/api/v1/{ep}", serve)
    server = await aiohttp_server(device)
    base = str(server.make_url("")).rstrip("/")
    config = Config(chargers=tuple(ChargerConfig(name, f"{base}/{name}") for name in ("big", "zipped")))
    samples = await scrape(await exporter_client(config))
    assert get(samples, "pulsatrix_up", charger="zipped") == 1.0
    assert get(samples, "pulsatrix_voltage_volts", charger="zipped", phase="L3") == 234.2052612
    for ep in ENDPOINTS:
        errors = get(samples, "pulsatrix_scrape_errors_total", charger="big", endpoint=ep, reason="invalid_payload")
        assert errors == (None if ep == "limits" else 1.0), ep
    assert get(samples, "pulsatrix_endpoint_up", charger="big", endpoint="limits") == 1.0


async def test_hanging_chargers_never_starve_a_healthy_one_of_connections(
    make_fleet: MakeFleet, exporter_client: MakeClient
) -> None:
    """Every charger can have all its requests open at once: 72 hanging chargers hold 288 connections."""
    # Three simulators (a test server's accept queue holds 128 connections), all chargers hanging, then a healthy
    # one that asks last, while the hanging ones hold their connections.
    chargers: list[ChargerConfig] = []
    for k in range(3):
        fleet = await make_fleet(24)
        for name in fleet.names:
            fleet.set_fault(name, "hang")
        chargers += [ChargerConfig(f"f{k}-{c.name}", c.url, timeout=1.0) for c in fleet.config().chargers]
    healthy = (await make_fleet(1)).config().chargers[0]
    client = await exporter_client(Config(chargers=(*chargers, ChargerConfig("healthy", healthy.url, timeout=1.0))))
    samples = await scrape(client)
    assert get(samples, "pulsatrix_up", charger="healthy") == 1.0
    assert get(samples, "pulsatrix_scrape_errors_total", charger="f0-garage", endpoint="limits", reason="timeout") == 1


class SlowResolver(ThreadedResolver):
    """Host-name lookups that hang in the default thread pool, like getaddrinfo() against a dead DNS server."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        await asyncio.get_running_loop().run_in_executor(None, time.sleep, 2.0)
        return await super().resolve("127.0.0.1", port, family)


async def test_hanging_dns_lookups_do_not_delay_the_reply(make_fleet: MakeFleet, aiohttp_client: ClientFactory) -> None:
    # One host name per charger, more than the default thread pool has threads (aiohttp merges lookups of a host).
    fleet = await make_fleet(min(32, (os.cpu_count() or 1) + 4) + 2)
    chargers = tuple(
        ChargerConfig(c.name, c.url.replace("127.0.0.1", f"{c.name}.invalid"), timeout=1.0)
        for c in fleet.config().chargers
    )
    client = await aiohttp_client(create_app(Config(chargers=chargers), resolver=SlowResolver()))
    started = time.monotonic()
    response = await client.get("/metrics", headers={"X-Prometheus-Scrape-Timeout-Seconds": "1.8"})
    elapsed = time.monotonic() - started
    samples = parse(await response.text())
    assert get(samples, "pulsatrix_scrape_errors_total", charger="garage", endpoint="limits", reason="timeout") == 1
    # The lookups keep the default thread pool busy for 2-4 s; the reply must not wait for them.
    assert elapsed < 1.8, f"reply took {elapsed:.2f}s, longer than the scrape timeout"


async def test_ready_turns_503_when_shutting_down(fleet: SimulatedFleet, exporter_client: MakeClient) -> None:
    client = await exporter_client(fleet.config())
    assert (await client.get("/-/ready")).status == 200
    await client.app.shutdown()  # what aiohttp runs first on SIGTERM, while in-flight requests finish
    assert (await client.get("/-/ready")).status == 503
    assert (await client.get("/-/healthy")).status == 200


async def test_own_metrics_contact_no_charger(fleet: SimulatedFleet, exporter_client: MakeClient) -> None:
    client = await exporter_client(fleet.config())
    samples = await scrape(client, "/-/metrics")
    assert get(samples, "pulsatrix_exporter_build_info", version=__version__) == 1.0
    assert get(samples, "process_resident_memory_bytes") is not None
    assert chargers_in(samples) == set()
    assert fleet.stats.requests == 0


async def test_a_wrong_base_url_says_which_url_was_asked_for(
    fleet: SimulatedFleet, exporter_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A url that already ends in /api/v1 makes every endpoint 404: the status page and the log say which URL was
    requested and that the exporter appends /api/v1/<endpoint> to the charger's url."""
    caplog.set_level(logging.INFO, logger="exporter")
    config = fleet.config()
    garage = dataclasses.replace(config.chargers[0], url=config.chargers[0].url + "/api/v1")
    client = await exporter_client(dataclasses.replace(config, chargers=(garage,)))
    await scrape(client)
    page = await (await client.get("/")).text()
    for endpoint in ENDPOINTS:
        asked = f"HTTP 404 Not Found for {garage.url}/api/v1/{endpoint} (the exporter appends /api/v1/{endpoint} to"
        assert f"<li><b>{endpoint}</b>: http_status: {asked}" in page
    logged = [r.getMessage() for r in caplog.records if "garage failing" in r.getMessage()]
    assert len(logged) == 1
    assert f"for {garage.url}/api/v1/" in logged[0] and "(the exporter appends /api/v1/" in logged[0]
