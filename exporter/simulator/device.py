"""The device model of a simulated pulsatrix charging controller: sessions, grid, meter, limits, the API bodies.

Behaviour:

* sessions go Idle → EVConnected → Charging → SuspendedEV → Idle, with realistic durations (divided by ``speed``);
* voltage around 230 V per phase with a slow drift and a sag under load, frequency around 50 Hz,
  power = Σ V×I×cos φ over the phases in use, an energy meter that integrates the power and only grows;
* ``limits`` answers with bare ``NaN`` literals when no limit is set; ``PUT limits`` (both field-name variants)
  sets limits that expire after their timeout;
* the chargers alternate between two firmware generations: OpenAPI field names (``pdName``, ``ctrlrName``,
  ``hasPhaseStShutoff``, two-character vehicle codes) and the prose-doc names (``powerDomainName``,
  ``controllerName``, ``hasPhaseShutoff`` + ``hasPhaseSTTurnon``, ``effectiveAmperageLimit`` in ``transaction``,
  single-letter vehicle statuses); every third charger is a single-phase installation;
* device faults (:data:`DEVICE_FAULTS`) change the values the charger reports; only the fault routes
  (:mod:`exporter.simulator.faults`) and tests set them.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

ENDPOINTS: Final = ("configuration", "transaction", "charging", "limits")
DEMO_NAMES: Final = ("garage", "carport", "visitor-bay")
SITES: Final = ("home", "depot-north", "depot-south")
# Each site's grid connection in watts, as deploy/prometheus/sites.yml gives it to the dashboards (a test keeps the
# two equal): the simulated load manager shares it among the site's charging chargers, as a real one does.
SITE_CAPACITY_W: Final = {"home": 22_000.0, "depot-north": 250_000.0, "depot-south": 150_000.0}
MIN_CURRENT: Final = 6.0  # IEC 61851: a charger cannot signal less; below it the load manager pauses the charger

# Device faults change the values the charger reports (transport faults: exporter.simulator.faults).
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
    site_share: float = math.inf  # amperes per phase the site's load manager allows (inf: no site limit)

    @property
    def site(self) -> str:
        return site_of(self.index)

    # --- simulation ------------------------------------------------------------------------------------

    def _duration(self, state: str) -> float:
        low, high = DURATIONS[state]
        return self.rng.uniform(low, high) / self.speed

    def enter(self, state: str, now: float) -> None:
        """Go to ``state`` at ``now`` (a new session starts with CONNECTED)."""
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
        target = min(target, self.site_share)
        return 0.0 if target < MIN_CURRENT else target

    def phases_in_use(self) -> int:
        return sum(1 for p in range(self.grid_phases) if self.used_phases[p] == "1")

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
                self.enter(CONNECTED, now)
            self.state = CHARGING
        if not held and self.fault != "vehicle_error" and now >= self.state_until:
            nxt = NEXT.get(self.state, IDLE)
            if self.state == CHARGING and not self.limits.enabled:
                nxt = CHARGING
            self.enter(nxt, now)
        if self.state == CHARGING and self.limits.enabled is False:
            self.state = "SuspendedEVSE"
        elif self.state == "SuspendedEVSE" and self.limits.enabled:
            self.state = CHARGING

        self._step_frequency()
        charging = self.state == CHARGING and self.fault not in ("stall", "vehicle_error")
        target = self._target_current() if charging else 0.0
        remaining = max(0.0, self.state_until - now) * self.speed
        if charging and remaining < 300:  # the vehicle tapers off near the end of the session
            target *= max(0.3, remaining / 300)

        def amps(p: int) -> float:
            in_use = p < self.grid_phases and self.used_phases[p] == "1"
            value = max(0.0, target - self.rng.uniform(0.1, 0.45)) if in_use and target > 0 else 0.0
            return value / 3 if self.fault == "imbalance" and p == 1 else value

        self._step_phases(now, amps)
        self.power = sum(v * a for v, a in zip(self.voltages, self.currents, strict=True)) * POWER_FACTOR
        if self.state in (CHARGING, SUSPENDED) and self.power < 1:
            self.power = self.rng.uniform(0.0, 3.0)  # standby draw of the vehicle
        self.energy_kwh += self.power * dt / 3_600_000
        if self.fault == "meter_reset" and not self.meter_reset_done:
            self.energy_kwh, self.meter_reset_done = 0.05, True

    def _step_frequency(self) -> None:
        """A random walk around 50 Hz, held within ±0.08 Hz (the frequency fault: 49.6 Hz)."""
        self.frequency = 50.0 + (self.frequency - 50.0) * 0.9 + self.rng.gauss(0, 0.006)
        self.frequency = min(50.08, max(49.92, self.frequency))
        if self.fault == "frequency":
            self.frequency = 49.6 + self.rng.gauss(0, 0.01)

    def _step_phases(self, now: float, amps: Callable[[int], float]) -> None:
        """Set the phase currents; voltages drift slowly per phase and sag 0.03 V per ampere drawn."""
        base = {"undervoltage": 198.0, "overvoltage": 258.0}.get(self.fault, 230.5)
        drift = 2.5 * math.sin(now / 600.0 + self.index)
        for p in range(3):
            current = amps(p)  # before the voltage noise: the random draws stay in the order of earlier versions
            self.currents[p] = round(current, 2)
            self.voltages[p] = base + drift * (1 + 0.1 * p) + self.rng.gauss(0, 0.35) - 0.03 * current

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
                "pdName": self.site,
                "ctrlrName": controller,
                "sessionId": f"018ba9bc-5ebe-b235-{self.index:04x}-{self.started_time:012x}",
                "effectiveAmperageLimit": int(self.max_current),
                "hasPhaseRotation": self.index % 2 == 1,
            }
            body["hasPhaseSTShutoff" if self.grid_phases == 1 else "hasPhaseStShutoff"] = self.grid_phases == 3
            return body
        return {
            "powerDomainName": self.site,
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


def site_of(index: int) -> str:
    """The demo's site of the charger at ``index``: the first is the home wallbox, the others alternate between the
    two depots (so the three-charger demo has one charger on each site)."""
    return SITES[0] if index == 0 else SITES[1 + (index - 1) % 2]


# Where in its cycle each charger starts: spread over the fleet by the golden ratio, so that neither a site nor a
# firmware generation charges in step (a draw from the charger's random generator would change its later draws).
GOLDEN: Final = 0.6180339887


def make_chargers(n: int, speed: float = 1.0, seed: int = 1, now: float | None = None) -> list[SimCharger]:
    """N chargers with varied firmware, phase count and a start state and point in it that differ from charger to
    charger (and not with the site)."""
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
        # Stagger: about a third of the fleet is charging at start, the others idle or suspended, each at its own
        # point of that state (the first three as ever: Charging, Idle, Suspended).
        charger.last_step = now
        phase = (i * GOLDEN) % 1.0
        start_state = (CHARGING, IDLE, SUSPENDED)[(i + i // 3) % 3]
        if start_state != IDLE:
            charger.enter(CONNECTED, now - 600 - phase * 1800 / speed)
        charger.enter(start_state, now)
        charger.state_until = now + (charger.state_until - now) * (1.0 - phase)
        charger.advance(now)
        chargers.append(charger)
    return chargers


class SiteLoadManager:
    """Shares each site's capacity (:data:`SITE_CAPACITY_W`) among the chargers whose vehicles ask for current
    (connected or charging), as a site's dynamic load management does: an equal current per phase for each, or,
    where that would be below the 6 A a charger can signal, 6 A for as many as fit (in name order) and a pause for
    the rest. It steps the whole fleet through simulated time one second at a time and shares again every second,
    so a vehicle that starts charging gets its share within a second."""

    HEADROOM = 0.95  # shares are computed on this much of the capacity: the phases' noise stays below it

    def __init__(self, chargers: list[SimCharger], capacity: dict[str, float] | None = None) -> None:
        self.capacity = dict(SITE_CAPACITY_W if capacity is None else capacity)
        self.chargers = sorted(chargers, key=lambda c: c.name)
        self.sites: dict[str, list[SimCharger]] = {}
        for charger in self.chargers:
            self.sites.setdefault(charger.site, []).append(charger)
        self.clock = max((c.last_step for c in chargers), default=0.0)

    def advance(self, now: float) -> None:
        """Bring every charger to ``now`` (whole seconds), sharing each site's capacity before each second."""
        while self.clock + 1.0 <= now:
            self.clock += 1.0
            for site, chargers in self.sites.items():
                if site in self.capacity:
                    self._share(self.capacity[site], chargers)
            for charger in self.chargers:
                charger.advance(self.clock)

    def _share(self, watts: float, chargers: list[SimCharger]) -> None:
        wanting = [c for c in chargers if c.state in (CHARGING, CONNECTED)]
        volt_amps = [230.0 * POWER_FACTOR * max(1, c.phases_in_use()) for c in wanting]
        budget = watts * self.HEADROOM
        share = budget / sum(volt_amps) if wanting else math.inf
        for charger in chargers:  # one that starts charging before the next share gets no more than the others
            charger.site_share = share
        if share < MIN_CURRENT:
            for charger, va in zip(wanting, volt_amps, strict=True):
                fits = budget >= MIN_CURRENT * va
                charger.site_share = MIN_CURRENT if fits else 0.0
                budget -= MIN_CURRENT * va if fits else 0.0
            for charger in chargers:
                if charger.state not in (CHARGING, CONNECTED):
                    charger.site_share = 0.0
