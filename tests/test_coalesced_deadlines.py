"""Coalesced polls and scrapes with different deadlines: a short scrape timeout never costs a longer scrape its data.

A ``/probe`` job with a short ``scrape_timeout`` (or a Grafana refresh) and a ``/metrics`` job with a longer one
share a poll of a slow but healthy charger. Every deadline here is on the test's loop clock (``loop_clock``): the
test moves time on instead of waiting for it.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from exporter.config import Config
from exporter.scrape.results import ENDPOINTS
from exporter.serve.app import EXPORTER
from exporter.simulator import set_fault
from tests.support.clock import LoopClock
from tests.support.fleet import MakeClient, SimulatedFleet
from tests.support.samples import get, parse, scrape

SHORT = {"X-Prometheus-Scrape-Timeout-Seconds": "0.8"}  # 0.6 s for the chargers


def slow_garage(fleet: SimulatedFleet, min_interval: float = 0.0) -> Config:
    set_fault(fleet.sim.chargers["garage"], "latency", seconds=1.0)  # healthy, answers within its 5 s timeout
    return Config(chargers=tuple(replace(c, min_interval=min_interval) for c in fleet.config().chargers))


async def test_a_longer_scrape_joining_a_short_scrapes_poll_gets_the_answer(
    fleet: SimulatedFleet, exporter_client: MakeClient, loop_clock: LoopClock
) -> None:
    client = await exporter_client(slow_garage(fleet))
    probe = asyncio.ensure_future(client.get("/probe?target=garage", headers=SHORT))
    await loop_clock.advance(0.1)  # the probe's poll is in flight
    metrics = await loop_clock.run(client.get("/metrics"))
    probed = parse(await (await probe).text())
    samples = parse(await metrics.text())
    assert get(samples, "pulsatrix_up", charger="garage") == 1.0, "the poll had the time of the longer scrape"
    assert get(samples, "pulsatrix_voltage_volts", charger="garage", phase="L1") is not None
    assert get(probed, "pulsatrix_up", charger="garage") == 0.0, "the short scrape still ended by its own deadline"
    for endpoint in ENDPOINTS:
        assert fleet.stats.hits[("garage", endpoint)] == 1  # still one request per endpoint
    timeouts = get(samples, "pulsatrix_scrape_errors_total", charger="garage", endpoint="charging", reason="timeout")
    assert timeouts is None, "a healthy charger is not counted as timing out: its timeout series never appears"


async def test_a_timeout_under_a_short_budget_is_not_served_again_for_min_interval(
    fleet: SimulatedFleet, exporter_client: MakeClient, loop_clock: LoopClock
) -> None:
    client = await exporter_client(slow_garage(fleet, min_interval=60.0))
    probed = await loop_clock.run(scrape(client, "/probe?target=garage", **SHORT))
    assert get(probed, "pulsatrix_up", charger="garage") == 0.0
    samples = await loop_clock.run(scrape(client))  # no timeout header: the charger's 5 s
    assert get(samples, "pulsatrix_up", charger="garage") == 1.0, "polled again, not the short scrape's timeout"
    assert get(samples, "pulsatrix_reading_age_seconds", charger="garage") == 0.0
    again = await loop_clock.run(scrape(client))
    assert get(again, "pulsatrix_up", charger="garage") == 1.0
    assert fleet.stats.hits[("garage", "charging")] == 2  # the good reading is served again for min_interval


async def test_a_poll_is_never_extended_beyond_the_chargers_timeout(
    fleet: SimulatedFleet, exporter_client: MakeClient, loop_clock: LoopClock
) -> None:
    """Scrapes arriving one after another while a charger hangs cannot keep its poll alive (and uncounted)."""
    set_fault(fleet.sim.chargers["garage"], "hang")
    chargers = tuple(replace(c, timeout=1.0) for c in fleet.config().chargers)
    client = await exporter_client(Config(chargers=chargers))
    scrapes = []
    status = client.app[EXPORTER].health.status["garage"]
    recorded_while_scraped = False
    for _ in range(6):  # bounded: one scrape every 0.3 s, each with a deadline later than the poll's
        scrapes.append(asyncio.ensure_future(client.get("/probe?target=garage")))
        await loop_clock.advance(0.3)
        recorded_while_scraped = recorded_while_scraped or status.up is False
    for response in await loop_clock.run(asyncio.gather(*scrapes)):
        assert get(parse(await response.text()), "pulsatrix_up", charger="garage") == 0.0
    assert recorded_while_scraped, "the first poll ended by the charger's timeout, although scrapes kept joining"
    assert status.last_error is not None and "timeout" in status.last_error


async def test_a_scraper_that_hangs_up_mid_poll_leaves_the_shared_poll_to_the_others(
    fleet: SimulatedFleet, exporter_client: MakeClient, loop_clock: LoopClock
) -> None:
    client = await exporter_client(slow_garage(fleet))
    gone = asyncio.ensure_future(client.get("/probe?target=garage"))
    await loop_clock.advance(0.2)  # its poll is in flight
    staying = asyncio.ensure_future(client.get("/metrics"))
    await loop_clock.advance(0.1)
    gone.cancel()  # Prometheus gave up and closed the connection
    samples = parse(await (await loop_clock.run(staying)).text())
    assert get(samples, "pulsatrix_up", charger="garage") == 1.0
    assert fleet.stats.hits[("garage", "charging")] == 1
    poller = client.app[EXPORTER].fleet.pollers["garage"]
    assert poller._task is None, "nothing left pending once the poll is over"
