"""A simulated fleet for in-process tests, the factory types of pytest-aiohttp's fixtures, and exporter config files.

The ``fleet``, ``make_fleet`` and ``exporter_client`` fixtures (tests/conftest.py) hand out the objects typed here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from exporter.config import Config, demo_config, load_config
from exporter.serve.app import create_app
from exporter.simulator import SIMULATOR, SimStats, Simulator

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
        stats = self.app[SIMULATOR].stats
        assert stats is not None, "the fleet's simulator counts requests (faults=True)"
        return stats

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


# The signatures of the conftest fixtures `exporter_client` and `make_fleet`.
MakeClient = Callable[[Config], Awaitable[ExporterClient]]
MakeFleet = Callable[..., Awaitable[SimulatedFleet]]


def write_config(path: Path, fleet: SimulatedFleet, names: list[str], **extra: Any) -> Path:
    """A config file at ``path`` with the chargers ``names`` of ``fleet``; ``extra`` holds top-level keys, and a
    charger's name as a key holds extra keys of that charger."""
    chargers = [{"name": n, "url": f"{fleet.base_url}/{n}", **extra.pop(n, {})} for n in names]
    path.write_text(yaml.safe_dump({"timeout": 2, **extra, "chargers": chargers}, sort_keys=False))
    return path


async def start(aiohttp_client: ClientFactory, path: Path) -> ExporterClient:
    """The exporter app loaded from the config file ``path`` (so that it can reload that file)."""
    # The path comes from the config's source; POST /-/reload is allowed (--web.enable-lifecycle).
    return await aiohttp_client(create_app(load_config(path), enable_lifecycle=True))
