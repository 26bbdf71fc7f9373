"""The simulator's statistics (simulate --faults and the tests, which open thousands of connections) forget closed
connections."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.conftest import SimulatedFleet


async def test_closed_connections_are_counted_but_not_kept(fleet: SimulatedFleet) -> None:
    url = f"{fleet.base_url}/garage/api/v1/charging"
    connector = aiohttp.TCPConnector(force_close=True)  # a new connection for every request
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(300):  # bounded
            async with session.get(url) as response:
                assert response.status == 200
                await response.read()
        await asyncio.sleep(0.05)  # the server notices the last close
    assert fleet.stats.connections_seen() == 300
    assert fleet.stats.open_connections() == 0
    assert len(fleet.stats.connections) < 150, "closed connections are dropped, not kept for the process's life"
