"""A simulator app: the device API of N chargers on one port, and (for tests, ``simulate --faults``) the fault
routes and request statistics."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from aiohttp import web

from exporter.simulator.api import SIMULATOR, SimAuth, Simulator, add_device_routes, require_auth
from exporter.simulator.device import SimCharger, make_chargers
from exporter.simulator.faults import add_fault_routes
from exporter.simulator.stats import mount_stats

# An exporter opens 4 connections per charger at once; a simulator of many chargers needs a deep accept queue.
SIM_BACKLOG: Final = 4096


def base_url(host: str, port: int) -> str:
    """``http://HOST:PORT``, with an IPv6 literal in brackets (``http://[::1]:8080``); a wildcard address is shown
    as the loopback address of its family, which is where a client on this machine reaches it."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


async def _on_shutdown(app: web.Application) -> None:
    app[SIMULATOR].stopping.set()


def create_simulator_app(
    n: int = 3,
    *,
    speed: float = 1.0,
    seed: int = 1,
    auth: SimAuth | None = None,
    clock: Callable[[], float] = time.time,
    chargers: Sequence[SimCharger] | None = None,
    faults: bool = False,
) -> web.Application:
    """N generated chargers (or ``chargers``) behind the device API and the simulator's auth.

    ``faults=True`` (tests, ``simulate --faults``) adds the fault routes and counts every request
    (:data:`exporter.simulator.stats.STATS`); without it (``--demo``) the app is the device API alone.
    """
    app = web.Application(middlewares=[require_auth])
    sims = list(chargers) if chargers is not None else make_chargers(n, speed=speed, seed=seed, now=clock())
    app[SIMULATOR] = Simulator(chargers={c.name: c for c in sims}, auth=auth or SimAuth(), clock=clock)
    if faults:
        mount_stats(app, app[SIMULATOR].chargers)
        add_fault_routes(app)
    else:
        add_device_routes(app)
    app.on_shutdown.append(_on_shutdown)
    return app


async def start_simulator(
    host: str = "127.0.0.1", port: int = 0, **kwargs: Any
) -> tuple[web.AppRunner, str, list[str]]:
    """Start a simulator (``kwargs`` as :func:`create_simulator_app`) on its own runner; return the runner, its base
    URL and the charger names."""
    app = create_simulator_app(**kwargs)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=SIM_BACKLOG)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound_port = sockets[0].getsockname()[1] if sockets else port
    return runner, base_url(host, bound_port), list(app[SIMULATOR].chargers)
