"""Shared fixtures: a simulator server and an exporter app wired to it, all on loopback."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from exporter.app import create_app
from exporter.config import Config, demo_config
from exporter.simulator import SIMULATOR, STATS, SimAuth, SimStats, Simulator, create_simulator_app

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

ServerFactory = Callable[..., Awaitable[TestServer]]
ExporterClient = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[ExporterClient]]


class SimulatedFleet:
    """A running simulator (with the fault routes and request statistics) plus a config pointing at it."""

    def __init__(self, server: TestServer, app: web.Application) -> None:
        self.server = server
        self.app = app
        self.base_url = str(server.make_url("")).rstrip("/")

    @property
    def sim(self) -> Simulator:
        return self.app[SIMULATOR]

    @property
    def stats(self) -> SimStats:
        return self.app[STATS]

    @property
    def names(self) -> list[str]:
        return list(self.sim.chargers)

    def config(self, labels: dict[str, dict[str, str]] | None = None) -> Config:
        return demo_config(self.base_url, self.names, labels)

    def set_fault(self, name: str, fault: str, endpoints: tuple[str, ...] | None = None) -> None:
        charger = self.sim.chargers[name]
        charger.fault = fault
        if endpoints is not None:
            charger.fault_endpoints = frozenset(endpoints)


@pytest.fixture
async def fleet(aiohttp_server: ServerFactory) -> SimulatedFleet:
    app = create_simulator_app(3, speed=1.0, seed=7, faults=True)
    server = await aiohttp_server(app)
    return SimulatedFleet(server, app)


@pytest.fixture
def make_fleet(aiohttp_server: ServerFactory) -> Callable[..., Awaitable[SimulatedFleet]]:
    async def factory(n: int = 3, auth: SimAuth | None = None, speed: float = 1.0) -> SimulatedFleet:
        app = create_simulator_app(n, speed=speed, seed=7, auth=auth, faults=True)
        server = await aiohttp_server(app)
        return SimulatedFleet(server, app)

    return factory


@pytest.fixture
def exporter_client(
    aiohttp_client: ClientFactory,
) -> Callable[[Config], Awaitable[TestClient[web.Request, web.Application]]]:
    async def factory(config: Config) -> TestClient[web.Request, web.Application]:
        return await aiohttp_client(create_app(config))

    return factory
