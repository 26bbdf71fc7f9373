"""Fault injection for tests and demos: ``PUT /_sim/<name>`` and ``GET /_sim``.

``PUT /_sim/<name>`` takes a JSON body ``{"fault": F, "endpoints": [...], "seconds": S}`` (see :data:`FAULTS`;
``seconds`` for ``latency`` and ``reboot``); ``GET /_sim`` lists the chargers and their faults. Mounted only by
``pulsatrix-exporter simulate --faults`` and by the tests (``create_simulator_app(..., faults=True)``), never by
``--demo``; behind the simulator's own auth like every other route.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from typing import Final

from aiohttp import web

from exporter.simulator.api import SIMULATOR, add_device_routes, answer, charger_for, endpoint_for
from exporter.simulator.device import CONNECTED, DEVICE_FAULTS, ENDPOINTS, SimCharger

# Transport faults make the endpoint fail; device faults (exporter.simulator.device) change the values reported.
TRANSPORT_FAULTS: Final = (
    "latency",  # every answer comes `seconds` late (default 2)
    "hang",  # no answer at all
    "disconnect",  # the connection is dropped before an answer (as close to "refused" as a shared port gets)
    "reset_mid_body",  # headers and half the body, then a TCP reset
    "truncated",  # headers promise more body than is sent before the connection closes
    "unauthorized",  # HTTP 401
    "http_403",
    "http_404",
    "http_500",
    "http_503",
    "invalid_json",  # a 200 whose JSON is cut off
    "invalid_payload",  # a 200 with JSON that is not an object
    "huge",  # a 200 with a 4 MiB body, far larger than any real reply
    "html",  # a 200 with an HTML page (a proxy's or captive portal's) instead of JSON
    "redirect",  # HTTP 302 to another host
    "reboot",  # down (connections dropped) for `seconds` (default 5), then a new session; the meter continues
)
FAULTS: Final = ("none", *TRANSPORT_FAULTS, *DEVICE_FAULTS)
DEFAULT_FAULT_SECONDS: Final = {"latency": 2.0, "reboot": 5.0}
HUGE_BODY_BYTES: Final = 4 << 20
HTML_PAGE: Final = (
    "<!doctype html><html><head><title>Proxy authentication required</title></head>"
    "<body><h1>Please log in to continue</h1></body></html>\n"
)


def set_fault(
    charger: SimCharger,
    fault: str,
    endpoints: Sequence[str] = ENDPOINTS,
    seconds: float | None = None,
    now: float | None = None,
) -> None:
    """Inject ``fault`` (one of :data:`FAULTS`) into ``charger``; ``seconds`` for latency and reboot.

    Transport faults take effect only on an app with the fault routes mounted (``faults=True``)."""
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}")
    charger.fault = fault
    charger.fault_endpoints = frozenset(endpoints)
    charger.meter_reset_done = False
    charger.next_flap = 0.0
    charger.fault_seconds = DEFAULT_FAULT_SECONDS.get(fault, 0.0) if seconds is None else seconds
    charger.down_until = (time.time() if now is None else now) + charger.fault_seconds if fault == "reboot" else 0.0


def _drop(request: web.Request) -> web.Response:
    """Drop the connection without an answer (the response returned is never sent)."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=204)


async def _half_body(request: web.Request, charger: SimCharger, endpoint: str, reset: bool) -> web.StreamResponse:
    body = json.dumps(getattr(charger, endpoint)() if endpoint != "limits" else {"enabled": True}).encode()
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    await asyncio.sleep(0.01)  # let the first half leave before the connection ends
    if request.transport is not None:
        if reset:
            request.transport.abort()
        else:
            request.transport.close()
    return response


async def _transport_fault(request: web.Request, charger: SimCharger, endpoint: str) -> web.StreamResponse | None:
    if charger.fault not in TRANSPORT_FAULTS or endpoint not in charger.fault_endpoints:
        return None
    sim = request.app[SIMULATOR]
    if charger.fault == "reboot":
        now = sim.clock()
        if now < charger.down_until:
            return _drop(request)
        charger.fault = "none"  # back up: a new session starts, the meter carries on where it was
        charger.advance(now)
        charger.enter(CONNECTED, now)
        return None
    if charger.fault == "latency":
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sim.stopping.wait(), timeout=charger.fault_seconds)
        return None
    if charger.fault == "hang":
        # Hang until the simulator stops (bounded, so that a forgotten test cannot hang for ever).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sim.stopping.wait(), timeout=300)
        return web.Response(status=503, text="hung\n")
    if charger.fault == "http_500":
        return web.Response(status=500, text="internal error\n")
    if charger.fault == "unauthorized":
        return web.Response(status=401, text="unauthorized\n")
    if charger.fault.startswith("http_"):
        status = int(charger.fault.removeprefix("http_"))
        return web.Response(status=status, text=f"error {status}\n")
    if charger.fault == "invalid_json":
        return web.Response(body=b'{"voltage": [230.1, 229.8,', content_type="application/json")
    if charger.fault == "invalid_payload":
        return web.Response(body=b'["not", "an", "object"]', content_type="application/json")
    if charger.fault == "huge":
        padding = b"x" * HUGE_BODY_BYTES
        return web.Response(body=b'{"padding": "' + padding + b'"}', content_type="application/json")
    if charger.fault == "html":
        return web.Response(text=HTML_PAGE, content_type="text/html")
    if charger.fault == "redirect":
        raise web.HTTPFound(f"http://127.0.0.2:9/{charger.name}/api/v1/{endpoint}")
    if charger.fault in ("reset_mid_body", "truncated"):
        return await _half_body(request, charger, endpoint, reset=charger.fault == "reset_mid_body")
    return _drop(request)  # disconnect


async def handle_get_with_faults(request: web.Request) -> web.StreamResponse:
    """A charger endpoint's GET, misbehaving as the charger's transport fault says."""
    charger = charger_for(request)
    endpoint = endpoint_for(request)
    fault = await _transport_fault(request, charger, endpoint)
    if fault is not None:
        return fault
    return answer(request.app[SIMULATOR], charger, endpoint)


async def handle_sim_list(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    return web.json_response(
        [
            {
                "name": c.name,
                "state": c.state_name(),
                "fault": c.fault,
                "endpoints": sorted(c.fault_endpoints),
                "generation": c.generation,
                "phases": c.grid_phases,
            }
            for c in sim.chargers.values()
        ]
    )


async def handle_sim_fault(request: web.Request) -> web.Response:
    charger = charger_for(request)
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="body is not JSON\n") from None
    fault = body.get("fault", "none") if isinstance(body, dict) else None
    if fault not in FAULTS:
        raise web.HTTPBadRequest(text=f"fault must be one of {', '.join(FAULTS)}\n")
    endpoints = body.get("endpoints", list(ENDPOINTS))
    if not isinstance(endpoints, list) or not set(endpoints) <= set(ENDPOINTS) or not endpoints:
        raise web.HTTPBadRequest(text=f"endpoints must be a non-empty list of {', '.join(ENDPOINTS)}\n")
    seconds = body.get("seconds", DEFAULT_FAULT_SECONDS.get(fault, 0.0))
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= 3600:
        raise web.HTTPBadRequest(text="seconds must be a number from 0 to 3600\n")
    set_fault(charger, fault, endpoints, float(seconds), request.app[SIMULATOR].clock())
    return web.json_response({"name": charger.name, "fault": fault, "endpoints": sorted(endpoints)})


def add_fault_routes(app: web.Application) -> None:
    """The device API whose GETs obey transport faults, plus ``GET /_sim`` and ``PUT /_sim/<name>``."""
    add_device_routes(app, handle_get_with_faults)
    app.router.add_get("/_sim", handle_sim_list)
    app.router.add_put("/_sim/{name}", handle_sim_fault)
