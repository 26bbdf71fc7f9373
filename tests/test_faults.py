"""Faults survived: every fault the simulator can inject, against a fleet whose chargers need basic or bearer auth.

For each fault: the other chargers are unaffected, the failing charger is ``pulsatrix_up 0`` with the right
reason, it is logged once when it starts failing and once when it recovers (no floods, even with debug logging on),
it comes back by itself, and no credential appears in any log line, exposition, page, reload answer or repr.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from exporter.config import load_config
from exporter.scrape.results import ENDPOINTS
from exporter.serve.app import EXPORTER, create_app
from exporter.simulator import SimAuth, create_simulator_app, set_fault
from tests.support.fleet import ClientFactory, ExporterClient, MakeFleet, ServerFactory, SimulatedFleet
from tests.support.samples import Samples, get, scrape
from tests.support.servers import free_port

PASSWORD = "s3cret-Pa55word-for-the-depot"
TOKEN = "tok-9f8e7d6c5b4a-bearer-token"
SECRET_FORMS = (
    PASSWORD,
    TOKEN,
    base64.b64encode(f"exporter:{PASSWORD}".encode()).decode(),
    f"Bearer {TOKEN}",
)
FAULT_REASONS = {
    "latency": "timeout",  # 3 s late, the deadline is 1 s
    "hang": "timeout",
    "refused": "connect",  # nothing listens on the charger's port
    "disconnect": "connect",
    "reset_mid_body": "connect",
    "truncated": "connect",
    "unauthorized": "unauthorized",  # 401
    "http_403": "unauthorized",
    "http_404": "http_status",
    "http_500": "http_status",
    "http_503": "http_status",
    "invalid_json": "invalid_json",
    "truncated_json": "invalid_json",  # (the simulator's invalid_json: a body cut off mid-document)
    "invalid_payload": "invalid_payload",
    "huge": "invalid_payload",  # more than 1 MiB
    "html": "invalid_json",  # a proxy's HTML page with status 200: not JSON, whatever its content type
    "redirect": "http_status",  # never followed
    "reboot": "connect",  # down, then back with a new session
}


@dataclass
class Rig:
    client: ExporterClient
    basic: SimulatedFleet  # garage (faulty), carport, visitor-bay; HTTP basic auth
    bearer: SimulatedFleet  # its garage is the charger "tokened" (faulty); bearer token
    config_path: Path


async def rig(make_fleet: MakeFleet, aiohttp_client: ClientFactory, tmp_path: Path, garage_url: str = "") -> Rig:
    basic = await make_fleet(3, auth=SimAuth(basic=("exporter", PASSWORD)))
    bearer = await make_fleet(1, auth=SimAuth(bearer=TOKEN))
    (tmp_path / "password").write_text(PASSWORD + "\n")
    (tmp_path / "token").write_text(TOKEN + "\n")
    basic_auth = {"basic": {"username": "exporter", "password_file": "password"}}
    chargers = [{"name": name, "url": f"{basic.base_url}/{name}", "auth": basic_auth} for name in basic.names] + [
        {"name": "tokened", "url": f"{bearer.base_url}/garage", "auth": {"bearer": {"token_file": "token"}}}
    ]
    if garage_url:
        chargers[0]["url"] = garage_url
    path = tmp_path / "pulsatrix.yml"
    path.write_text(yaml.safe_dump({"timeout": 1, "chargers": chargers}, sort_keys=False))
    client = await aiohttp_client(create_app(load_config(path), enable_lifecycle=True))
    return Rig(client, basic, bearer, path)


def log_lines(caplog: pytest.LogCaptureFixture, charger: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("exporter") and r.levelno >= logging.INFO and f"charger {charger} " in r.getMessage()
    ]


def assert_failing(samples: Samples, charger: str, reason: str, times: float) -> None:
    assert get(samples, "pulsatrix_up", charger=charger) == 0.0, charger
    for endpoint in ENDPOINTS:
        count = get(samples, "pulsatrix_scrape_errors_total", charger=charger, endpoint=endpoint, reason=reason)
        assert count == times, (charger, endpoint, reason, count)
    assert get(samples, "pulsatrix_voltage_volts", charger=charger, phase="L1") is None


def assert_healthy(samples: Samples, charger: str) -> None:
    assert get(samples, "pulsatrix_up", charger=charger) == 1.0, charger
    assert get(samples, "pulsatrix_voltage_volts", charger=charger, phase="L1") is not None
    errors = [
        labels
        for (name, labels), _ in samples.items()
        if name == "pulsatrix_scrape_errors_total" and ("charger", charger) in labels
    ]
    assert not errors, (charger, errors)  # no error counted for a healthy charger: its error series never appear
    assert get(samples, "pulsatrix_scrape_failures_total", charger=charger) == 0.0, charger
    assert (get(samples, "pulsatrix_scrapes_total", charger=charger) or 0.0) >= 1.0, charger


@pytest.mark.parametrize("fault", list(FAULT_REASONS))
async def test_every_fault_is_survived_reported_logged_once_and_leaks_nothing(
    make_fleet: MakeFleet,
    aiohttp_client: ClientFactory,
    aiohttp_server: ServerFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    fault: str,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, every level
    reason = FAULT_REASONS[fault]
    refused_port = free_port() if fault == "refused" else 0
    garage_url = f"http://127.0.0.1:{refused_port}/garage" if refused_port else ""
    r = await rig(make_fleet, aiohttp_client, tmp_path, garage_url)
    sim_fault = "invalid_json" if fault == "truncated_json" else fault
    seconds = {"latency": 3.0, "reboot": 1.5}.get(fault)
    if fault != "refused":
        set_fault(r.basic.sim.chargers["garage"], sim_fault, seconds=seconds)
        set_fault(r.bearer.sim.chargers["garage"], sim_fault, seconds=seconds)
    else:
        set_fault(r.bearer.sim.chargers["garage"], "disconnect")  # the nearest thing on a shared port
    tokened_reason = "connect" if fault == "refused" else reason
    pages: list[str] = []

    # Failing, twice: reported with its reason each time, logged once.
    for times in (1, 2):
        response = await r.client.get("/metrics")
        pages.append(await response.text())
        samples = await scrape(r.client)
        pages.append(str(samples))
        assert_failing(samples, "garage", reason, 2 * times)
        assert_failing(samples, "tokened", tokened_reason, 2 * times)
        for healthy in ("carport", "visitor-bay"):
            assert_healthy(samples, healthy)
    for charger in ("garage", "tokened"):
        lines = log_lines(caplog, charger)
        assert len(lines) == 1 and lines[0].startswith(f"charger {charger} failing: "), lines
    assert f"failing: {reason} on configuration, transaction, charging, limits" in log_lines(caplog, "garage")[0]
    pages.append(await (await r.client.get("/")).text())
    pages.append(await (await r.client.get("/probe?target=garage")).text())

    # Back by itself (the fault ends, or the reboot is over, or something listens on the port again).
    if fault == "reboot":
        await asyncio.sleep(1.6)
    elif fault == "refused":
        app = create_simulator_app(1, seed=7, auth=SimAuth(basic=("exporter", PASSWORD)))
        await aiohttp_server(app, port=refused_port)
        set_fault(r.bearer.sim.chargers["garage"], "none")
    else:
        set_fault(r.basic.sim.chargers["garage"], "none")
        set_fault(r.bearer.sim.chargers["garage"], "none")
    for _ in range(2):
        samples = await scrape(r.client)
        assert_healthy(samples, "carport")
        assert get(samples, "pulsatrix_up", charger="garage") == 1.0
        assert get(samples, "pulsatrix_up", charger="tokened") == 1.0
    for charger in ("garage", "tokened"):
        assert log_lines(caplog, charger)[1:] == [f"charger {charger} recovered: every endpoint answers again"]
    pages.append(str(samples))
    pages.append(await (await r.client.get("/")).text())
    pages.append(await (await r.client.get("/-/metrics")).text())

    # A rejected reload answers with the problems: without the secrets either.
    r.config_path.write_text(r.config_path.read_text().replace("timeout: 1", "timeout: []"))
    rejected = await r.client.post("/-/reload")
    assert rejected.status == 500
    pages.append(await rejected.text())

    app = r.client.app
    reprs = [
        repr(app[EXPORTER].fleet),
        repr(app[EXPORTER].fleet.config),
        repr(list(app[EXPORTER].fleet.pollers.values())),
        repr([p.client for p in app[EXPORTER].fleet.pollers.values()]),
        repr(app[EXPORTER].health.status),
        repr(app[EXPORTER]),
        repr(app[EXPORTER].reloader),
    ]
    everything = "\n".join([*pages, *reprs, caplog.text, *(repr(rec.exc_info) for rec in caplog.records)])
    for form in SECRET_FORMS:
        assert form not in everything


async def test_latency_below_the_deadline_is_no_fault(
    make_fleet: MakeFleet, aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    r = await rig(make_fleet, aiohttp_client, tmp_path)
    set_fault(r.basic.sim.chargers["garage"], "latency", seconds=0.3)
    samples = await scrape(r.client)
    assert_healthy(samples, "garage")
    duration = get(samples, "pulsatrix_scrape_duration_seconds", charger="garage")
    assert duration is not None and duration >= 0.3


async def test_a_reboot_starts_a_new_session_and_the_meter_continues(
    make_fleet: MakeFleet, aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    r = await rig(make_fleet, aiohttp_client, tmp_path)
    before = await scrape(r.client, "/probe?target=garage")
    set_fault(r.basic.sim.chargers["garage"], "reboot", seconds=1.0)
    down = await scrape(r.client, "/probe?target=garage")
    assert get(down, "pulsatrix_up", charger="garage") == 0.0
    await asyncio.sleep(1.1)
    after = await scrape(r.client, "/probe?target=garage")
    assert get(after, "pulsatrix_up", charger="garage") == 1.0
    start_before = get(before, "pulsatrix_session_start_timestamp_seconds", charger="garage")
    start_after = get(after, "pulsatrix_session_start_timestamp_seconds", charger="garage")
    assert start_before is not None and start_after is not None and start_after > start_before
    energy_before = get(before, "pulsatrix_energy_imported_joules_total", charger="garage")
    energy_after = get(after, "pulsatrix_energy_imported_joules_total", charger="garage")
    assert energy_before is not None and energy_after is not None and energy_after >= energy_before
