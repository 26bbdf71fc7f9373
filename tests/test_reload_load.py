"""Reload under load: SIGHUP and POST /-/reload while scrapes run, with chargers added, removed and changed.

Bounded loops on loopback; the scrapers stop by themselves when the reloads are done.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.config import load_config
from exporter.serve.app import EXPORTER, create_app
from exporter.simulator import SimAuth, set_fault
from tests.support.fleet import ClientFactory, MakeFleet, SimulatedFleet, start, write_config
from tests.support.samples import chargers_in, get, parse, scrape


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_a_reload_that_replaces_the_pool_joins_the_poll_in_flight(
    fleet: SimulatedFleet, aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    """A new keep-alive (or a bigger pool) gives unchanged chargers a new poller: it takes over the poll in flight
    instead of sending the charger a second request at the same time."""
    path = write_config(tmp_path / "pulsatrix.yml", fleet, ["garage"], min_interval=60)
    client = await start(aiohttp_client, path)
    set_fault(fleet.sim.chargers["garage"], "latency", seconds=0.6)
    first = asyncio.ensure_future(client.get("/metrics"))
    await asyncio.sleep(0.2)  # garage's poll is in flight
    old = client.app[EXPORTER].fleet.pollers["garage"]
    write_config(path, fleet, ["garage"], min_interval=60, keepalive_timeout=100)
    assert (await client.post("/-/reload")).status == 200
    assert client.app[EXPORTER].fleet.pollers["garage"] is not old
    second = await client.get("/metrics")
    for response in (await first, second):
        assert get(parse(await response.text()), "pulsatrix_up", charger="garage") == 1.0
    third = await scrape(client)
    assert fleet.stats.max_in_flight[("garage", "charging")] == 1
    assert fleet.stats.hits[("garage", "charging")] == 1, "one poll, then its reading served again (min_interval)"
    age = get(third, "pulsatrix_reading_age_seconds", charger="garage")
    assert age is not None and age > 0


def write_random_config(path: Path, fleet: SimulatedFleet, secret: Path, rnd: random.Random) -> list[str]:
    names = [n for n in fleet.names if rnd.random() < 0.7] or fleet.names[:1]
    chargers: list[dict[str, Any]] = []
    for name in names:
        charger: dict[str, Any] = {
            "name": name,
            "url": f"{fleet.base_url}/{name}" + rnd.choice(["", "/"]),  # the same URL, written differently
            "timeout": rnd.choice([1, 1.5]),
            "auth": {"basic": {"username": "exporter", "password_file": str(secret)}},
        }
        if rnd.random() < 0.3:
            charger["min_interval"] = rnd.choice([0, 0.5, 5])
        chargers.append(charger)
    doc: dict[str, Any] = {"timeout": 1, "chargers": chargers}
    if rnd.random() < 0.4:
        doc["keepalive_timeout"] = rnd.choice([10, 20, 300])
    if rnd.random() < 0.3:
        doc["max_concurrency"] = rnd.choice([1, 2, 50])
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return names


async def test_reloads_under_load_never_fail_a_scrape_nor_leak(
    make_fleet: MakeFleet, aiohttp_client: ClientFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    fleet = await make_fleet(6, auth=SimAuth(basic=("exporter", "right")))
    set_fault(fleet.sim.chargers[fleet.names[1]], "latency", seconds=0.3)
    secret = tmp_path / "password"
    secret.write_text("right\n")
    path = tmp_path / "pulsatrix.yml"
    rnd = random.Random(11)  # noqa: S311 - a reproducible test sequence
    names = write_random_config(path, fleet, secret, rnd)
    client = await aiohttp_client(create_app(load_config(path), enable_lifecycle=True))
    await scrape(client)
    fds_before = open_fds()
    reloader = client.app[EXPORTER].reloader
    statuses: list[int] = []
    done = asyncio.Event()

    async def scraper(route: str) -> None:
        while not done.is_set():
            response = await client.get(route)
            await response.read()
            statuses.append(response.status)

    scrapers = [asyncio.ensure_future(scraper(r)) for r in ("/metrics", "/metrics", "/-/metrics")]
    expected_ok = True
    for i in range(40):  # bounded
        kind = rnd.random()
        if kind < 0.15:
            path.write_text(path.read_text().replace("url:", "ulr:", 1))  # invalid
            expected_ok = False
        elif kind < 0.25:
            secret.unlink(missing_ok=True)  # the secret file vanished
            expected_ok = False
        else:
            secret.write_text(rnd.choice(["right\n", "wrong\n"]))
            names = write_random_config(path, fleet, secret, rnd)
            expected_ok = True
        if i % 2:
            stamp = reloader.success_time
            response = await client.post("/-/reload")
            assert response.status == (200 if expected_ok else 500)
            assert (reloader.success_time != stamp) == expected_ok
        else:
            os.kill(os.getpid(), signal.SIGHUP)
            for _ in range(100):  # bounded: until the reload task is over
                await asyncio.sleep(0.02)
                if not reloader.busy and reloader.successful == expected_ok:
                    break
        assert reloader.successful == expected_ok
        await asyncio.sleep(rnd.choice([0.0, 0.05, 0.2]))
    done.set()
    await asyncio.gather(*scrapers)
    assert statuses and set(statuses) == {200}, "no scrape failed during the reloads"

    own = await scrape(client, "/-/metrics")
    assert get(own, "pulsatrix_exporter_config_last_reload_successful") == (1.0 if expected_ok else 0.0)
    secret.write_text("right\n")
    names = write_random_config(path, fleet, secret, random.Random(5))  # noqa: S311
    assert (await client.post("/-/reload")).status == 200
    final = await scrape(client)
    assert chargers_in(final) == set(names), "exactly the configured chargers, no stale series of removed ones"
    assert all(get(final, "pulsatrix_up", charger=n) == 1.0 for n in names)

    fleet_state = client.app[EXPORTER].fleet
    for _ in range(100):  # bounded: 10 s; replaced pools close after their polls' longest timeout + 1 s
        if not fleet_state._retired:
            break
        await asyncio.sleep(0.1)
    assert not fleet_state._retired
    # Both ends of every socket live in this process: the pool in use holds at most one per endpoint of each
    # charger (and the simulator the other end); nothing of the replaced pools stays open.
    await scrape(client)
    assert fleet.stats.open_connections() <= 4 * len(names)
    assert open_fds() <= fds_before + 2 * 4 * len(fleet.names), "no pool or socket left behind by the reloads"
    assert not [r for r in caplog.records if r.name == "asyncio"], "no task destroyed pending, no lost exception"
