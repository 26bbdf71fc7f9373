"""Shared fixtures: a simulator server and an exporter app wired to it, all on loopback; a throw-away PKI.

The helpers these fixtures use, and everything else tests share, live in tests/support/ (see tests/README.md).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from exporter.config import Config
from exporter.eventloop import ENV
from exporter.eventloop import choose as choose_loop
from exporter.serve.app import create_app
from exporter.simulator import SimAuth, create_simulator_app
from tests.support.clock import LoopClock
from tests.support.fleet import ClientFactory, ServerFactory, SimulatedFleet
from tests.support.tls import make_pki


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every async test runs on the loop the exporter runs on by default (uvloop where it is installed), or on the
    one $PULSATRIX_EVENT_LOOP names, as the exporter would; a test on the fake clock (``loop_clock``) on the
    standard loop, whose clock is a method that can be moved (uvloop's is libuv's own)."""
    on_fake_clock = "loop_clock" in getattr(item, "fixturenames", ())
    loop = choose_loop("asyncio" if on_fake_clock else os.environ.get(ENV) or "auto")
    return {loop.name: loop.new_loop}


REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


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


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (tests.support.tls.make_pki), made once
    per test module that asks for it."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def loop_clock() -> LoopClock:
    """The test's event-loop clock, moved on with ``await loop_clock.advance(seconds)`` instead of sleeping
    (tests/support/clock.py). It stays on the loop until the loop closes with the test, so that the servers'
    clean-up runs on it too."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, asyncio.BaseEventLoop), f"the fake clock needs the standard loop, not {type(loop)}"
    clock = LoopClock(loop)
    clock.install()
    return clock
