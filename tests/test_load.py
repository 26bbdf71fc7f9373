"""Load held: 4 scrapers asking /metrics of 200 simulated chargers back to back, on loopback, for a bounded time.

``PULSATRIX_LOAD_SECONDS`` sets the duration (CI: 6 s; the README's figure is from a 60 s run:
``PULSATRIX_LOAD_SECONDS=60 .venv/bin/pytest -s tests/test_load.py``). No failed scrape, no error counted for a
healthy charger, never more than one request in flight per charger endpoint (counted at the simulator), and the
memory in use flat after warm-up. However slow the runner, the run lasts until the warm-up mark is taken after
``WARM_UP`` scrapes and ``AFTER_WARM`` more have followed it, so that the memory is always compared across scrapes.
"""

from __future__ import annotations

import asyncio
import gc
import os
import resource
import sys
import time

from exporter.config import Config, demo_config
from exporter.serve.app import create_app
from exporter.simulator import SIMULATOR, start_simulator
from tests.support.fleet import ClientFactory
from tests.support.samples import get, parse

CHARGERS = 200
SCRAPERS = 4
SECONDS = float(os.environ.get("PULSATRIX_LOAD_SECONDS", "6"))
# Scrapes before the warm-up mark (which waits for SECONDS / 3 too) and after it, at least, whatever SECONDS allowed.
WARM_UP = AFTER_WARM = 2 * SCRAPERS
# Kept-alive sockets: 4 per charger on the exporter's side and 4 on the simulator's (same process), plus slack.
FDS_NEEDED = 2 * 4 * CHARGERS + 200


def _enough_file_descriptors() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < FDS_NEEDED:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(FDS_NEEDED, hard), hard))


def _memory_blocks() -> int:
    gc.collect()
    return sys.getallocatedblocks()


async def test_four_scrapers_of_200_chargers_hold(aiohttp_client: ClientFactory) -> None:
    _enough_file_descriptors()
    runner, base_url, names = await start_simulator("127.0.0.1", 0, n=CHARGERS, seed=3, faults=True)
    try:
        sim = runner.app[SIMULATOR].stats
        assert sim is not None
        config: Config = demo_config(base_url, names)
        client = await aiohttp_client(create_app(config))
        loop = asyncio.get_running_loop()
        end = loop.time() + SECONDS
        warm_end = loop.time() + SECONDS / 3
        durations: list[float] = []
        failures: list[str] = []
        marks: dict[str, int] = {}  # "warm": allocated blocks after warm-up, "at": scrapes done by then

        def more() -> bool:
            return loop.time() < end or "warm" not in marks or len(durations) < marks["at"] + AFTER_WARM

        async def scraper() -> None:
            while more():
                started = time.perf_counter()
                response = await client.get("/metrics", headers={"X-Prometheus-Scrape-Timeout-Seconds": "10"})
                text = await response.text()
                durations.append(time.perf_counter() - started)
                up = [line for line in text.splitlines() if line.startswith("pulsatrix_up{")]
                if response.status != 200 or len(up) != CHARGERS or not all(ln.endswith(" 1.0") for ln in up):
                    failures.append(f"status {response.status}, {sum(ln.endswith(' 1.0') for ln in up)} up")
                if "warm" not in marks and loop.time() >= warm_end and len(durations) >= WARM_UP:
                    marks["warm"], marks["at"] = _memory_blocks(), len(durations)

        await asyncio.gather(*(scraper() for _ in range(SCRAPERS)))
        after = _memory_blocks()
        final = parse(await (await client.get("/metrics")).text())
        polls = sim.hits[(names[0], "charging")]

        assert failures == []
        errors = {key: value for key, value in final.items() if key[0] == "pulsatrix_scrape_errors_total" and value}
        assert errors == {}
        assert max(sim.max_in_flight.values()) == 1
        assert sim.connections_seen() <= 4 * CHARGERS
        assert get(final, "pulsatrix_up", charger=names[-1]) == 1.0
        warm = marks["warm"]  # always taken (see more()), never compared with itself
        assert len(durations) >= marks["at"] + AFTER_WARM
        assert after <= warm * 1.1, f"memory in use grew from {warm} to {after} blocks after warm-up"
        durations.sort()
        print(  # the figure for the README, shown with -s
            f"\n{SCRAPERS} scrapers x {CHARGERS} chargers, {SECONDS:g} s: {len(durations)} scrapes, "
            f"median {durations[len(durations) // 2]:.3f} s, max {durations[-1]:.3f} s; "
            f"{polls} polls per charger endpoint; {sim.connections_seen()} connections; "
            f"allocated blocks {warm} after warm-up, {after} at the end"
        )
    finally:
        await runner.cleanup()
