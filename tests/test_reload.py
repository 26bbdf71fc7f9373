"""Reload without downtime: SIGHUP and POST /-/reload re-read the config file and its secret files."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path

import pytest

from exporter.config import load_config
from exporter.serve.app import EXPORTER, create_app
from exporter.serve.reload import Reloader
from exporter.simulator import SimAuth, set_fault
from tests.support.fleet import (
    ClientFactory,
    MakeFleet,
    SimulatedFleet,
    start,
    write_config,
)
from tests.support.samples import get, parse, scrape


async def sighup_and_wait(reloader: Reloader) -> None:
    """SIGHUP this process (the exporter under test) and wait, at most 5 s, until a reload succeeded."""
    stamp = reloader.success_time
    os.kill(os.getpid(), signal.SIGHUP)
    for _ in range(100):
        if reloader.success_time != stamp:
            return
        await asyncio.sleep(0.05)


async def test_a_valid_reload_adds_keeps_and_removes_chargers(
    fleet: SimulatedFleet, aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    path = write_config(tmp_path / "pulsatrix.yml", fleet, ["garage", "carport"])
    client = await start(aiohttp_client, path)
    set_fault(fleet.sim.chargers["carport"], "http_500", ["limits"])
    await scrape(client)
    kept = client.app[EXPORTER].fleet.pollers["garage"]
    session = client.app[EXPORTER].fleet.session
    before = await scrape(client, "/-/metrics")

    write_config(path, fleet, ["garage", "visitor-bay"])
    response = await client.post("/-/reload")
    assert response.status == 200
    assert (await response.text()).startswith(f"config reloaded: {path}: OK, 2 chargers (garage, visitor-bay)")

    samples = await scrape(client)
    assert get(samples, "pulsatrix_up", charger="visitor-bay") == 1.0  # added
    assert not [key for key in samples if ("charger", "carport") in key[1]]  # removed: no stale series at all
    assert client.app[EXPORTER].fleet.pollers["garage"] is kept  # unchanged: same client, cache and connections
    assert client.app[EXPORTER].fleet.session is session
    # The simulated chargers share one host and port, so one pool: the 8 sockets of the first scrape served the
    # scrape after the reload too (a new session would have opened new ones).
    assert fleet.stats.connections_seen() == 8
    after = await scrape(client, "/-/metrics")
    assert get(after, "pulsatrix_exporter_config_last_reload_successful") == 1.0
    stamp_before = get(before, "pulsatrix_exporter_config_last_reload_success_timestamp_seconds")
    stamp_after = get(after, "pulsatrix_exporter_config_last_reload_success_timestamp_seconds")
    assert stamp_before is not None and stamp_after is not None and stamp_after > stamp_before
    assert [g["targets"] for g in await (await client.get("/sd")).json()] == [["garage"], ["visitor-bay"]]
    assert (await client.get("/probe?target=carport")).status == 404


async def test_an_invalid_config_is_rejected_and_the_old_one_keeps_running(
    fleet: SimulatedFleet, aiohttp_client: ClientFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="exporter")
    path = write_config(tmp_path / "pulsatrix.yml", fleet, ["garage"])
    client = await start(aiohttp_client, path)
    started = get(await scrape(client), "pulsatrix_exporter_config_last_reload_success_timestamp_seconds")

    path.write_text(path.read_text().replace("url:", "ulr:"))
    response = await client.post("/-/reload")
    assert response.status == 500
    reason = await response.text()
    assert f"{path}: chargers[0] (garage): ulr: unknown key (did you mean 'url'?)" in reason
    rejected = [r.getMessage() for r in caplog.records if "config reload rejected" in r.getMessage()]
    assert rejected == [
        f"config reload rejected, the running config stays: {path}: chargers[0] (garage): ulr: unknown key "
        "(did you mean 'url'?); chargers[0] (garage): url: required key is missing"
    ]
    samples = await scrape(client)
    assert get(samples, "pulsatrix_up", charger="garage") == 1.0  # still polled with the old config
    assert get(samples, "pulsatrix_exporter_config_last_reload_successful") == 0.0
    assert get(samples, "pulsatrix_exporter_config_last_reload_success_timestamp_seconds") == started

    write_config(path, fleet, ["garage"])
    assert (await client.post("/-/reload")).status == 200
    assert get(await scrape(client), "pulsatrix_exporter_config_last_reload_successful") == 1.0


async def test_a_scrape_in_flight_finishes_with_the_config_it_started_with(
    fleet: SimulatedFleet, aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    path = write_config(tmp_path / "pulsatrix.yml", fleet, ["garage", "carport"])
    client = await start(aiohttp_client, path)
    set_fault(fleet.sim.chargers["carport"], "latency", seconds=0.5)
    in_flight = asyncio.ensure_future(client.get("/metrics"))
    await asyncio.sleep(0.2)
    write_config(path, fleet, ["garage"])
    assert (await client.post("/-/reload")).status == 200
    response = await in_flight
    assert response.status == 200
    samples = parse(await response.text())
    assert get(samples, "pulsatrix_up", charger="carport") == 1.0  # not dropped
    assert get(samples, "pulsatrix_scrape_errors_total", charger="carport") is None  # its counters are gone
    assert get(await scrape(client), "pulsatrix_up", charger="carport") is None


async def test_sighup_reloads_the_config_and_the_secret_files(
    make_fleet: MakeFleet, aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    fleet = await make_fleet(1, auth=SimAuth(basic=("exporter", "new-password")))
    secret = tmp_path / "garage-password"
    secret.write_text("old-password\n")
    auth = {"auth": {"basic": {"username": "exporter", "password_file": str(secret)}}}
    path = write_config(tmp_path / "pulsatrix.yml", fleet, ["garage"], garage=auth)
    client = await start(aiohttp_client, path)
    samples = await scrape(client)
    assert get(samples, "pulsatrix_scrape_errors_total", charger="garage", endpoint="limits", reason="unauthorized")

    secret.write_text("new-password\n")  # the config file itself is unchanged
    reloader = client.app[EXPORTER].reloader
    stamp = reloader.success_time
    await sighup_and_wait(reloader)
    assert reloader.success_time != stamp, "SIGHUP did not reload"
    assert get(await scrape(client), "pulsatrix_up", charger="garage") == 1.0


async def test_reload_over_http_is_refused_without_web_enable_lifecycle_and_sighup_still_works(
    fleet: SimulatedFleet, aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    path = write_config(tmp_path / "pulsatrix.yml", fleet, ["garage"])
    client = await aiohttp_client(create_app(load_config(path)))  # as started without --web.enable-lifecycle
    write_config(path, fleet, ["garage", "carport"])
    response = await client.post("/-/reload")
    assert response.status == 403
    assert await response.text() == (
        "Lifecycle API is not enabled: start the exporter with --web.enable-lifecycle to reload over HTTP, or send "
        "it SIGHUP\n"
    )
    assert list(client.app[EXPORTER].fleet.pollers) == ["garage"]  # nothing was re-read
    await sighup_and_wait(client.app[EXPORTER].reloader)
    assert list(client.app[EXPORTER].fleet.pollers) == ["garage", "carport"]


async def test_reload_without_a_config_file_says_so(fleet: SimulatedFleet, aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(create_app(fleet.config(), enable_lifecycle=True))  # in memory, like the demo
    response = await client.post("/-/reload")
    assert response.status == 500
    assert await response.text() == (
        "nothing to reload: the exporter runs without a config file (demo or in-memory config)\n"
    )
    samples = await scrape(client, "/-/metrics")
    assert get(samples, "pulsatrix_exporter_config_last_reload_successful") == 1.0
    assert (await client.get("/-/reload")).status == 405  # a reload changes state: POST only


async def test_reload_applies_new_serving_options(
    fleet: SimulatedFleet, aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    path = write_config(tmp_path / "pulsatrix.yml", fleet, ["garage"])
    client = await start(aiohttp_client, path)
    await scrape(client)
    write_config(path, fleet, ["garage"], min_interval=60)
    assert (await client.post("/-/reload")).status == 200
    for _ in range(2):
        samples = await scrape(client)
    assert fleet.stats.hits[("garage", "charging")] == 2  # polled once before and once after the reload
    age = get(samples, "pulsatrix_reading_age_seconds", charger="garage")
    assert age is not None and age > 0


def test_sighup_no_longer_ends_the_process(tmp_path: Path) -> None:
    """The installed command under a real signal: it reloads, stays up, and says so in its log and metrics."""
    from tests.support.servers import http_get_text, run_exporter, run_simulator, write_config_for

    with run_simulator(tmp_path / "sim", chargers=2) as simulator:
        path = write_config_for(simulator, tmp_path / "pulsatrix.yml")
        with run_exporter(path, tmp_path / "exporter") as exporter:
            text = path.read_text()
            path.write_text(text.replace("timeout: 2.0", "timeout: 3.0"))
            exporter.proc.send_signal(signal.SIGHUP)
            for _ in range(100):  # bounded: 10 s
                if "config reloaded" in exporter.log.read_text():
                    break
                time.sleep(0.1)
            assert exporter.proc.poll() is None, "SIGHUP ended the exporter"
            assert f"config reloaded: {path}: OK, 2 chargers" in exporter.log.read_text()
            samples = parse(http_get_text(f"{exporter.url}/-/metrics"))
            assert get(samples, "pulsatrix_exporter_config_last_reload_successful") == 1.0


async def test_a_new_keepalive_gets_a_new_pool_and_the_old_one_closes_after_its_polls(
    fleet: SimulatedFleet, aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    path = write_config(tmp_path / "pulsatrix.yml", fleet, ["garage"], min_interval=60)
    path.write_text(path.read_text().replace("timeout: 2", "timeout: 0.5"))
    client = await start(aiohttp_client, path)
    await scrape(client)
    old = client.app[EXPORTER].fleet.session
    assert old is not None
    write_config(path, fleet, ["garage"], min_interval=60, keepalive_timeout=100)
    path.write_text(path.read_text().replace("timeout: 2", "timeout: 0.5"))
    assert (await client.post("/-/reload")).status == 200
    assert client.app[EXPORTER].fleet.session is not old
    samples = await scrape(client)
    assert fleet.stats.hits[("garage", "charging")] == 1  # the cached reading moved to the new pool's poller
    assert get(samples, "pulsatrix_up", charger="garage") == 1.0
    for _ in range(40):  # bounded: 4 s; it closes once no poll uses it (here at once: none was in flight)
        if old.closed:
            break
        await asyncio.sleep(0.1)
    assert old.closed


async def test_a_new_max_concurrency_applies_to_the_chargers_a_reload_keeps(
    make_fleet: MakeFleet, aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    fleet = await make_fleet(3)
    for charger in fleet.sim.chargers.values():
        set_fault(charger, "latency", seconds=0.2)
    path = write_config(tmp_path / "pulsatrix.yml", fleet, fleet.names)
    client = await start(aiohttp_client, path)
    before = dict(client.app[EXPORTER].fleet.pollers)
    write_config(path, fleet, fleet.names, max_concurrency=1)
    assert (await client.post("/-/reload")).status == 200
    assert client.app[EXPORTER].fleet.pollers == before  # same chargers, same pool: the pollers are kept ...
    samples = await scrape(client)
    assert all(get(samples, "pulsatrix_up", charger=name) == 1.0 for name in fleet.names)  # 3 x 0.2 s < 2 s
    assert fleet.stats.max_chargers_in_flight == 1  # ... and polled one at a time from the next scrape on


async def test_concurrent_reload_requests_coalesce_into_at_most_two_reloads(
    fleet: SimulatedFleet, aiohttp_client: ClientFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20 POSTs while a reload reads the file: one more reload runs after it, and covers all of them."""
    import threading

    from exporter.config import load_config

    path = write_config(tmp_path / "pulsatrix.yml", fleet, ["garage"])
    client = await start(aiohttp_client, path)
    reading, release = threading.Event(), threading.Event()

    def slow_load(source: Path) -> object:
        config = load_config(source)
        reading.set()
        release.wait(timeout=30)  # the first reload has read the file and is busy until the flood is in
        return config

    monkeypatch.setattr("exporter.serve.reload.load_config", slow_load)
    first = asyncio.ensure_future(client.post("/-/reload"))
    assert await asyncio.to_thread(reading.wait, 30)
    write_config(path, fleet, ["garage", "carport"])  # changed after the first reload started reading
    flood = [asyncio.ensure_future(client.post("/-/reload")) for _ in range(19)]
    await asyncio.sleep(0.2)  # every request is in (they only wait on the reloads)
    release.set()
    answers = [(await request).status for request in [first, *flood]]
    texts = [(await (await request).text()).split(", 0 with auth")[0] for request in [first, *flood]]
    assert client.app[EXPORTER].reloader.runs == 2
    assert answers == [200] * 20
    assert texts[0] == f"config reloaded: {path}: OK, 1 charger (garage)"
    assert texts[1:] == [f"config reloaded: {path}: OK, 2 chargers (garage, carport)"] * 19
    assert list(client.app[EXPORTER].fleet.pollers) == ["garage", "carport"]
    write_config(path, fleet, ["carport"])
    last = await (await client.post("/-/reload")).text()
    assert last.startswith(f"config reloaded: {path}: OK, 1 charger (carport), ")
    assert client.app[EXPORTER].reloader.runs == 3  # once idle, a request runs its own reload at once
