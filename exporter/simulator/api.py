"""The device API of the simulated chargers: ``/<name>/api/v1/{configuration,transaction,charging,limits}``.

Every route of a simulator app (the fault routes too, when mounted) sits behind :func:`require_auth`, the
simulator's own ``--basic`` / ``--bearer``.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler

from exporter.simulator.device import ENDPOINTS, SimCharger, SiteLoadManager
from exporter.simulator.script import ScriptRun
from exporter.simulator.stats import DEVICE_GET_ROUTE, SimStats


@dataclass(slots=True)
class SimAuth:
    basic: tuple[str, str] | None = None
    bearer: str | None = None

    def expected(self) -> str | None:
        if self.basic is not None:
            token = base64.b64encode(f"{self.basic[0]}:{self.basic[1]}".encode()).decode()
            return f"Basic {token}"
        if self.bearer is not None:
            return f"Bearer {self.bearer}"
        return None


@dataclass(slots=True)
class Simulator:
    """One simulator app's state: the chargers it serves, its auth and its clock (Unix seconds; sped up in script
    mode); with a script, the scripted run it drives; with the fault routes, the statistics of what it is asked."""

    chargers: dict[str, SimCharger]
    auth: SimAuth = field(default_factory=SimAuth)
    clock: Callable[[], float] = time.time
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    load: SiteLoadManager | None = None  # the sites' load management (generated chargers; not scripted ones)
    script: ScriptRun | None = None
    stats: SimStats | None = None


SIMULATOR = web.AppKey("simulator", Simulator)


@web.middleware
async def require_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse any request of any route without the credentials the simulator was started with."""
    expected = request.app[SIMULATOR].auth.expected()
    if expected is not None:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise web.HTTPUnauthorized(text="unauthorized\n", headers={"WWW-Authenticate": 'Basic realm="pulsatrix"'})
    return await handler(request)


def charger_for(request: web.Request) -> SimCharger:
    charger = request.app[SIMULATOR].chargers.get(request.match_info["name"])
    if charger is None:
        raise web.HTTPNotFound(text="no such charger\n")
    return charger


def endpoint_for(request: web.Request) -> str:
    endpoint = request.match_info["endpoint"]
    if endpoint not in ENDPOINTS:
        raise web.HTTPNotFound(text="no such endpoint\n")
    return endpoint


def answer(sim: Simulator, charger: SimCharger, endpoint: str) -> web.Response:
    """The device's reply for ``endpoint`` now."""
    now = sim.clock()
    if sim.load is not None:
        sim.load.advance(now)
    charger.advance(now)
    if endpoint == "limits":
        return web.Response(body=charger.limits_body(), content_type="application/json")
    body = {
        "configuration": charger.configuration,
        "transaction": charger.transaction,
        "charging": charger.charging,
    }[endpoint]()
    return web.json_response(body)


async def handle_get(request: web.Request) -> web.StreamResponse:
    charger = charger_for(request)
    return answer(request.app[SIMULATOR], charger, endpoint_for(request))


async def handle_put_limits(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    charger = charger_for(request)
    try:
        body = json.loads(await request.text())  # accepts NaN, as the device does
    except ValueError:
        raise web.HTTPBadRequest(text="body is not JSON\n") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object\n")
    charger.advance(sim.clock())
    error = charger.put_limits(body, sim.clock())
    if error is not None:
        raise web.HTTPBadRequest(text=error + "\n")
    return web.Response(status=204)


def add_device_routes(app: web.Application, get: Handler = handle_get) -> None:
    """The device API; ``get`` answers its GETs (the fault routes pass one that can misbehave)."""
    app.router.add_get("/{name}/api/v1/{endpoint}", get, name=DEVICE_GET_ROUTE)
    app.router.add_put("/{name}/api/v1/limits", handle_put_limits)
