"""A simulator of pulsatrix charging controllers: the full local REST API for N chargers on one port.

Each charger lives under ``/<name>/api/v1/{configuration,transaction,charging,limits}``, so its base URL for the
exporter is ``http://HOST:PORT/<name>``. Behaviour:

* sessions go Idle → EVConnected → Charging → SuspendedEV → Idle, with realistic durations (divided by ``speed``);
* voltage around 230 V per phase with a slow drift and a sag under load, frequency around 50 Hz,
  power = Σ V×I×cos φ over the phases in use, an energy meter that integrates the power and only grows;
* ``limits`` answers with bare ``NaN`` literals when no limit is set; ``PUT limits`` (both field-name variants)
  sets limits that expire after their timeout;
* the chargers alternate between two firmware generations: OpenAPI field names (``pdName``, ``ctrlrName``,
  ``hasPhaseStShutoff``, two-character vehicle codes) and the prose-doc names (``powerDomainName``,
  ``controllerName``, ``hasPhaseShutoff`` + ``hasPhaseSTTurnon``, ``effectiveAmperageLimit`` in ``transaction``,
  single-letter vehicle statuses); every third charger is a single-phase installation;
* optional HTTP basic or bearer auth;
* faults for tests and demos, set with ``PUT /_sim/<name>`` and a JSON body
  ``{"fault": F, "endpoints": [...], "seconds": S}`` (see :data:`FAULTS`; ``seconds`` for ``latency`` and
  ``reboot``); ``GET /_sim`` lists the chargers and their faults. The ``/_sim`` routes exist only on the
  simulator, never on the exporter;
* it counts what it is asked (:class:`Simulator`): requests and the most in flight at once per charger endpoint,
  and the client connections it holds open, so that tests can prove how gently the exporter polls.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web

ENDPOINTS: Final = ("configuration", "transaction", "charging", "limits")
DEMO_NAMES: Final = ("garage", "carport", "visitor-bay")
SITES: Final = ("home", "depot-north", "depot-south")

# Transport faults make the endpoint fail; device faults change the values the charger reports.
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
DEVICE_FAULTS: Final = (
    "vehicle_error",  # vehicle/controller status F, state Faulted
    "undervoltage",  # ~198 V on every phase
    "overvoltage",  # ~258 V on every phase
    "frequency",  # 49.6 Hz
    "imbalance",  # charging, L2 draws a third of L1/L3
    "stall",  # state Charging, but no current and ~0 W
    "meter_reset",  # the energy meter jumps back near 0 (once), then grows again
    "limit_flap",  # an API limit is set with a short timeout and expires, over and over
)
FAULTS: Final = ("none", *TRANSPORT_FAULTS, *DEVICE_FAULTS)

IDLE, CONNECTED, CHARGING, SUSPENDED = "Idle", "EVConnected", "Charging", "SuspendedEV"
# IEC 61851 status per state: (vehicle code, controller letter)
IEC: Final = {
    IDLE: ("A1", "A"),
    CONNECTED: ("B1", "B"),
    CHARGING: ("C2", "C"),
    SUSPENDED: ("B2", "B"),
    "SuspendedEVSE": ("B1", "B"),
    "Faulted": ("F1", "F"),
}
# Seconds per state at speed 1 (min, max).
DURATIONS: Final = {IDLE: (120, 900), CONNECTED: (5, 30), CHARGING: (600, 3600), SUSPENDED: (60, 300)}
NEXT: Final = {IDLE: CONNECTED, CONNECTED: CHARGING, CHARGING: SUSPENDED, SUSPENDED: IDLE}
START_REASONS: Final = ("CablePluggedIn", "Authorized", "EVDetected")
STOP_REASONS: Final = ("EVDisconnected", "StoppedByEV", "Local")
POWER_FACTOR: Final = 0.99
# An exporter opens 4 connections per charger at once; a simulator of many chargers needs a deep accept queue.
SIM_BACKLOG: Final = 4096
DEFAULT_FAULT_SECONDS: Final = {"latency": 2.0, "reboot": 5.0}
HUGE_BODY_BYTES: Final = 4 << 20
HTML_PAGE: Final = (
    "<!doctype html><html><head><title>Proxy authentication required</title></head>"
    "<body><h1>Please log in to continue</h1></body></html>\n"
)


@dataclass(slots=True)
class SimLimits:
    enabled: bool = True
    current: float = math.nan
    power: float = math.nan
    timeout_ms: float = 300_000.0
    set_at: float = 0.0


@dataclass(slots=True)
class SimCharger:
    name: str
    index: int
    generation: int  # 1: OpenAPI field names; 2: prose-doc field names
    grid_phases: int  # 3, or 1 for a single-phase installation
    max_current: float
    rng: random.Random
    speed: float = 1.0
    fault: str = "none"
    fault_endpoints: frozenset[str] = frozenset(ENDPOINTS)
    state: str = IDLE
    state_until: float = 0.0
    started_time: int = 0
    ended_time: int = 0
    meter_start: float = 0.0
    meter_stop: float = 0.0
    energy_kwh: float = 0.0
    used_phases: str = "111"
    start_reason: str = ""
    stop_reason: str = ""
    currents: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    voltages: list[float] = field(default_factory=lambda: [230.0, 230.0, 230.0])
    frequency: float = 50.0
    power: float = 0.0
    limits: SimLimits = field(default_factory=SimLimits)
    last_step: float = 0.0
    meter_reset_done: bool = False
    next_flap: float = 0.0
    fault_seconds: float = 0.0
    down_until: float = 0.0  # reboot: wall-clock time at which it answers again

    # --- simulation ------------------------------------------------------------------------------------

    def _duration(self, state: str) -> float:
        low, high = DURATIONS[state]
        return self.rng.uniform(low, high) / self.speed

    def _enter(self, state: str, now: float) -> None:
        if state == CONNECTED:
            self.started_time = int(now)
            self.ended_time = 0
            self.meter_start = round(self.energy_kwh, 6)
            self.meter_stop = 0.0
            self.start_reason = self.rng.choice(START_REASONS)
            self.stop_reason = ""
            one_phase_car = self.grid_phases == 1 or self.rng.random() < 0.3
            self.used_phases = "100" if one_phase_car else "111"
        elif state == IDLE and self.started_time:
            self.ended_time = int(now)
            self.meter_stop = round(self.energy_kwh, 6)
            self.stop_reason = self.rng.choice(STOP_REASONS)
        self.state = state
        self.state_until = now + self._duration(state)

    def _target_current(self) -> float:
        target = min(16.0, self.max_current)
        lim = self.limits
        if not math.isnan(lim.current):
            target = min(target, lim.current)
        if not math.isnan(lim.power):
            target = min(target, lim.power / (230.0 * max(1, self.used_phases.count("1"))))
        return 0.0 if target < 6.0 else target

    def advance(self, now: float) -> None:
        """Step the simulation up to ``now`` (wall-clock seconds), one second of simulated time at a time."""
        if self.last_step == 0.0:
            self.last_step = now
        self._expire_limits(now)
        while self.last_step < now:
            dt = min(1.0, now - self.last_step)
            self.last_step += dt
            self._step(self.last_step, dt)

    def _expire_limits(self, now: float) -> None:
        lim = self.limits
        if self.fault == "limit_flap" and now >= self.next_flap:
            lim.current, lim.timeout_ms, lim.set_at = 10.0, 5_000.0, now
            self.next_flap = now + 12.0
        if (not math.isnan(lim.current) or not math.isnan(lim.power)) and now > lim.set_at + lim.timeout_ms / 1000:
            lim.current = lim.power = math.nan

    def _step(self, now: float, dt: float) -> None:
        held = self.fault in ("stall", "imbalance")
        if held and self.state != CHARGING:
            if not self.started_time or self.ended_time:
                self._enter(CONNECTED, now)
            self.state = CHARGING
        if not held and self.fault != "vehicle_error" and now >= self.state_until:
            nxt = NEXT.get(self.state, IDLE)
            if self.state == CHARGING and not self.limits.enabled:
                nxt = CHARGING
            self._enter(nxt, now)
        if self.state == CHARGING and self.limits.enabled is False:
            self.state = "SuspendedEVSE"
        elif self.state == "SuspendedEVSE" and self.limits.enabled:
            self.state = CHARGING

        # Grid: slow drift per phase, sag under load, frequency random walk around 50 Hz.
        base = {"undervoltage": 198.0, "overvoltage": 258.0}.get(self.fault, 230.5)
        drift = 2.5 * math.sin(now / 600.0 + self.index)
        self.frequency = 50.0 + (self.frequency - 50.0) * 0.9 + self.rng.gauss(0, 0.006)
        self.frequency = min(50.08, max(49.92, self.frequency))
        if self.fault == "frequency":
            self.frequency = 49.6 + self.rng.gauss(0, 0.01)

        charging = self.state == CHARGING and self.fault not in ("stall", "vehicle_error")
        target = self._target_current() if charging else 0.0
        remaining = max(0.0, self.state_until - now) * self.speed
        if charging and remaining < 300:  # the vehicle tapers off near the end of the session
            target *= max(0.3, remaining / 300)
        for p in range(3):
            in_use = p < self.grid_phases and self.used_phases[p] == "1"
            amps = max(0.0, target - self.rng.uniform(0.1, 0.45)) if in_use and target > 0 else 0.0
            if self.fault == "imbalance" and p == 1 and amps > 0:
                amps /= 3
            self.currents[p] = round(amps, 2)
            self.voltages[p] = base + drift * (1 + 0.1 * p) + self.rng.gauss(0, 0.35) - 0.03 * amps
        self.power = sum(v * a for v, a in zip(self.voltages, self.currents, strict=True)) * POWER_FACTOR
        if self.state in (CHARGING, SUSPENDED) and self.power < 1:
            self.power = self.rng.uniform(0.0, 3.0)  # standby draw of the vehicle
        self.energy_kwh += self.power * dt / 3_600_000
        if self.fault == "meter_reset" and not self.meter_reset_done:
            self.energy_kwh, self.meter_reset_done = 0.05, True

    # --- the device API --------------------------------------------------------------------------------

    def iec(self) -> tuple[str, str]:
        vehicle, controller = IEC.get(self.state, ("UNKNOWN", "S"))
        if self.fault == "vehicle_error":
            vehicle, controller = "F1", "F"
        # Second-generation firmware swaps the two forms (as the prose docs describe).
        return (
            (vehicle[0], vehicle if vehicle != "UNKNOWN" else "S1") if self.generation == 2 else (vehicle, controller)
        )

    def state_name(self) -> str:
        return "Faulted" if self.fault == "vehicle_error" else self.state

    def configuration(self) -> dict[str, Any]:
        controller = f"{self.name.replace('-', ' ').title()} Wallbox"
        if self.generation == 1:
            body: dict[str, Any] = {
                "pdName": SITES[self.index % len(SITES)],
                "ctrlrName": controller,
                "sessionId": f"018ba9bc-5ebe-b235-{self.index:04x}-{self.started_time:012x}",
                "effectiveAmperageLimit": int(self.max_current),
                "hasPhaseRotation": self.index % 2 == 1,
            }
            body["hasPhaseSTShutoff" if self.grid_phases == 1 else "hasPhaseStShutoff"] = self.grid_phases == 3
            return body
        return {
            "powerDomainName": SITES[self.index % len(SITES)],
            "controllerName": controller,
            "hasPhaseRotation": False,
            "hasPhaseShutoff": True,
            "hasPhaseSTTurnon": True,
        }

    def transaction(self) -> dict[str, Any]:
        vehicle, controller = self.iec()
        body: dict[str, Any] = {
            "state": self.state_name(),
            "startedTime": self.started_time,
            "endedTime": self.ended_time,
            "meterStart": self.meter_start,
            "meterStop": self.meter_stop,
            "vehicleStatus": vehicle,
            "chargeControllerStatus": controller,
            "usedPhasesSession": self.used_phases if self.started_time else "000",
            "startReason": self.start_reason,
            "stopReason": self.stop_reason,
            "allocationSourceName": "API" if self._api_limited() else ("Team" if self.index % 4 == 3 else "Unmanaged"),
        }
        if self.generation == 2:
            body["sessionId"] = f"018ba9bc-5ebe-b235-{self.index:04x}-{self.started_time:012x}"
            body["effectiveAmperageLimit"] = float(self.max_current)
        return body

    def _api_limited(self) -> bool:
        return not math.isnan(self.limits.current) or not math.isnan(self.limits.power)

    def charging(self) -> dict[str, Any]:
        n = self.grid_phases
        charging = self.state == CHARGING and self.fault not in ("stall", "vehicle_error")
        allocated = self._target_current() if self.state in (CHARGING, SUSPENDED, CONNECTED) else 0.0
        return {
            "voltage": [round(v, 7) for v in self.voltages[:n]],
            "amperage": self.currents[:n],
            "allocatedAmperage": allocated,
            "commandedAmperage": allocated if charging else 0.0,
            "availableAmperage": self.max_current,
            "signaledAmperage": allocated if self.state in (CHARGING, SUSPENDED) else 0.0,
            "frequency": round(self.frequency, 6),
            "energyImported": round(self.energy_kwh, 6),
            "lastActivePower": round(self.power, 6),
        }

    def limits_body(self) -> bytes:
        lim = self.limits
        # Real devices send bare NaN literals (not valid JSON); json.dumps writes exactly that.
        return json.dumps(
            {
                "enabled": lim.enabled,
                "amperageLimit": lim.current,
                "powerLimit": lim.power,
                "timeout": lim.timeout_ms,
            }
        ).encode()

    def put_limits(self, body: dict[str, Any], now: float) -> str | None:
        """Apply a PUT body; return an error message or None."""
        lim = self.limits
        names = {
            "enabled": ("enabled",),
            "current": ("amperageLimit", "setAmperageLimit"),
            "power": ("powerLimit", "sePowerLimit", "setPowerLimit"),
            "timeout_ms": ("timeout", "setTimeout"),
        }
        values: dict[str, Any] = {}
        for attr, keys in names.items():
            for key in keys:
                if key in body:
                    values[attr] = body[key]
        if "enabled" in values and not isinstance(values["enabled"], bool):
            return "enabled must be a boolean"
        for attr in ("current", "power", "timeout_ms"):
            if attr in values and (isinstance(values[attr], bool) or not isinstance(values[attr], int | float)):
                return f"{attr} must be a number"
        if "current" in values and not math.isnan(values["current"]):
            values["current"] = 0.0 if values["current"] < 6 else min(float(values["current"]), 80.0)
        if "power" in values and not math.isnan(values["power"]):
            values["power"] = 0.0 if values["power"] < 1380 else min(float(values["power"]), 55200.0)
        for attr, value in values.items():
            setattr(lim, attr, value)
        lim.set_at = now
        return None


def make_chargers(n: int, speed: float = 1.0, seed: int = 1, now: float | None = None) -> list[SimCharger]:
    """N chargers with varied firmware, phase count and a staggered start state."""
    now = time.time() if now is None else now
    names = [*DEMO_NAMES[:n]] + [f"bay-{i:04d}" for i in range(len(DEMO_NAMES), n)]
    chargers = []
    for i, name in enumerate(names):
        rng = random.Random(seed * 1000 + i)  # noqa: S311 - simulation, not cryptography
        charger = SimCharger(
            name=name,
            index=i,
            generation=2 if i % 3 == 1 else 1,
            grid_phases=1 if i % 3 == 2 else 3,
            max_current=32.0 if i % 3 != 1 else 16.0,
            rng=rng,
            speed=speed,
            energy_kwh=round(rng.uniform(50, 9800), 6),
        )
        # Stagger: a third of the fleet is charging at start, others idle or suspended.
        charger.last_step = now
        start_state = (CHARGING, IDLE, SUSPENDED)[i % 3]
        if start_state != IDLE:
            charger._enter(CONNECTED, now - 600)
        charger._enter(start_state, now)
        charger.advance(now)
        chargers.append(charger)
    return chargers


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
    chargers: dict[str, SimCharger]
    auth: SimAuth = field(default_factory=SimAuth)
    clock: Callable[[], float] = time.time
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    requests: int = 0
    hits: Counter[tuple[str, str]] = field(default_factory=Counter)  # (charger, endpoint) -> requests
    in_flight: Counter[tuple[str, str]] = field(default_factory=Counter)  # requests being answered now
    max_in_flight: Counter[tuple[str, str]] = field(default_factory=Counter)  # the most at once so far
    connections: dict[int, asyncio.BaseTransport] = field(default_factory=dict)  # id -> connection, closed pruned
    connections_total: int = 0  # client connections seen so far
    max_chargers_in_flight: int = 0  # the most chargers with a request being answered at the same time
    _charger_in_flight: Counter[str] = field(default_factory=Counter)
    _open_after_prune: int = 0
    _chargers_busy: int = 0

    def open_connections(self) -> int:
        """Client connections that asked for a charger endpoint and are still open."""
        return sum(1 for transport in self.connections.values() if not transport.is_closing())

    def connections_seen(self) -> int:
        return self.connections_total

    def saw_connection(self, transport: asyncio.BaseTransport) -> None:
        """Count a client connection once; forget closed ones now and then (a demo runs for months)."""
        if id(transport) in self.connections and self.connections[id(transport)] is transport:
            return
        self.connections_total += 1
        self.connections[id(transport)] = transport
        if len(self.connections) >= 2 * self._open_after_prune + 64:  # amortised: a sweep per doubling
            self.connections = {k: t for k, t in self.connections.items() if not t.is_closing()}
            self._open_after_prune = len(self.connections)


SIMULATOR = web.AppKey("simulator", Simulator)


def _charger(request: web.Request) -> SimCharger:
    charger = request.app[SIMULATOR].chargers.get(request.match_info["name"])
    if charger is None:
        raise web.HTTPNotFound(text="no such charger\n")
    return charger


def _check_auth(request: web.Request) -> None:
    expected = request.app[SIMULATOR].auth.expected()
    if expected is None:
        return
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise web.HTTPUnauthorized(text="unauthorized\n", headers={"WWW-Authenticate": 'Basic realm="pulsatrix"'})


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
        charger._enter(CONNECTED, now)
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


async def handle_get(request: web.Request) -> web.StreamResponse:
    sim = request.app[SIMULATOR]
    sim.requests += 1
    charger = _charger(request)
    endpoint = request.match_info["endpoint"]
    if endpoint not in ENDPOINTS:
        raise web.HTTPNotFound(text="no such endpoint\n")
    key = (charger.name, endpoint)
    sim.hits[key] += 1
    if request.transport is not None:
        sim.saw_connection(request.transport)
    sim.in_flight[key] += 1
    sim.max_in_flight[key] = max(sim.max_in_flight[key], sim.in_flight[key])
    sim._charger_in_flight[charger.name] += 1
    if sim._charger_in_flight[charger.name] == 1:
        sim._chargers_busy += 1
        sim.max_chargers_in_flight = max(sim.max_chargers_in_flight, sim._chargers_busy)
    try:
        return await _answer(request, sim, charger, endpoint)
    finally:
        sim.in_flight[key] -= 1
        sim._charger_in_flight[charger.name] -= 1
        if sim._charger_in_flight[charger.name] == 0:
            sim._chargers_busy -= 1


async def _answer(request: web.Request, sim: Simulator, charger: SimCharger, endpoint: str) -> web.StreamResponse:
    _check_auth(request)
    fault = await _transport_fault(request, charger, endpoint)
    if fault is not None:
        return fault
    charger.advance(sim.clock())
    if endpoint == "limits":
        return web.Response(body=charger.limits_body(), content_type="application/json")
    body = {
        "configuration": charger.configuration,
        "transaction": charger.transaction,
        "charging": charger.charging,
    }[endpoint]()
    return web.json_response(body)


async def handle_put_limits(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    charger = _charger(request)
    _check_auth(request)
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
    charger = _charger(request)
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


def set_fault(
    charger: SimCharger,
    fault: str,
    endpoints: Sequence[str] = ENDPOINTS,
    seconds: float | None = None,
    now: float | None = None,
) -> None:
    """Inject ``fault`` (one of :data:`FAULTS`) into ``charger``; ``seconds`` for latency and reboot."""
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}")
    charger.fault = fault
    charger.fault_endpoints = frozenset(endpoints)
    charger.meter_reset_done = False
    charger.next_flap = 0.0
    charger.fault_seconds = DEFAULT_FAULT_SECONDS.get(fault, 0.0) if seconds is None else seconds
    charger.down_until = (time.time() if now is None else now) + charger.fault_seconds if fault == "reboot" else 0.0


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
) -> web.Application:
    app = web.Application()
    sims = list(chargers) if chargers is not None else make_chargers(n, speed=speed, seed=seed, now=clock())
    app[SIMULATOR] = Simulator(chargers={c.name: c for c in sims}, auth=auth or SimAuth(), clock=clock)
    app.router.add_get("/{name}/api/v1/{endpoint}", handle_get)
    app.router.add_put("/{name}/api/v1/limits", handle_put_limits)
    app.router.add_get("/_sim", handle_sim_list)
    app.router.add_put("/_sim/{name}", handle_sim_fault)
    app.on_shutdown.append(_on_shutdown)
    return app


async def start_simulator(
    host: str = "127.0.0.1", port: int = 0, **kwargs: Any
) -> tuple[web.AppRunner, str, list[str]]:
    """Start a simulator on its own runner; return the runner, its base URL and the charger names."""
    app = create_simulator_app(**kwargs)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=SIM_BACKLOG)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound_port = sockets[0].getsockname()[1] if sockets else port
    url_host = f"[{host}]" if ":" in host else host
    return runner, f"http://{url_host}:{bound_port}", list(app[SIMULATOR].chargers)
