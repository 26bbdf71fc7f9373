"""Scripted sessions (``simulate --script FILE``): chargers that charge exactly when, how long and how hard a script
says, and a session log of what they did: the ground truth an energy report is checked against.

The script (YAML)::

    chargers:
      - name: home              # the charger's URL path: /home/api/v1/...
        meter_start_kwh: 1200.0 # optional, the meter reading at start (0)
        sessions:
          - {after: 5, duration: 20, power: 11000}

Each session idles ``after`` seconds of simulated time (after the previous session ended, or after the start),
then charges ``duration`` seconds at a constant ``power`` W, then stops: the meter rises by exactly
power × duration. After its last session a charger stays idle. The schedule starts at the first whole second of the
simulated clock, so that whole-second ``after`` and ``duration`` give session times that are whole seconds, as the
device serves them (``startedTime``/``endedTime`` are Unix seconds).

The session log (JSON lines, flushed per line) has a ``start`` and a ``stop`` event per session, with the times and
meter readings exactly as served in ``/api/v1/transaction``; a session still running when the simulator stops has
no ``stop`` line.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import yaml

from exporter.config import ConfigError
from exporter.simulator.device import CHARGING, IDLE, POWER_FACTOR, SimCharger

MAX_SCRIPT_BYTES: Final = 1 << 20
NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
MAX_POWER_W: Final = 100_000.0  # 3 × 230 V × 125 A: more than any AC charger delivers
MAX_SECONDS: Final = 10 * 365 * 86400.0
SESSION_KEYS: Final = ("after", "duration", "power")
# The frequency's random walk is stepped once per simulated second; after a jump of the clock (a test driving it, a
# high --speed) at most this many steps are taken: the walk forgets its past within ~50 steps.
MAX_GRID_STEPS: Final = 600


class ScriptError(ConfigError):
    """All problems found in one session script ("FILE: 2 problems in session script" and one line each)."""

    kind = "session script"


@dataclass(frozen=True, slots=True)
class ScriptedSession:
    after: float  # s idle before the session starts
    duration: float  # s charging
    power: float  # W while charging


@dataclass(frozen=True, slots=True)
class ScriptedCharger:
    name: str
    meter_start_kwh: float = 0.0
    sessions: tuple[ScriptedSession, ...] = ()


@dataclass(frozen=True, slots=True)
class Script:
    chargers: tuple[ScriptedCharger, ...]
    source: str = "<script>"


# --- reading the script ---------------------------------------------------------------------------------------


def _number(problems: list[str], path: str, value: Any, *, low: float, high: float, low_open: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        problems.append(f"{path}: must be a number, got {value!r}")
        return 0.0
    if (value <= low if low_open else value < low) or value > high:
        bound = "above" if low_open else "at least"
        problems.append(f"{path}: must be {bound} {low:.15g} and at most {high:.15g}, got {value:.15g}")
    return float(value)


def _unknown_keys(problems: list[str], path: str, item: Mapping[Any, Any], known: Sequence[str]) -> None:
    for key in item:
        if key not in known:
            problems.append(f"{path}.{key}: unknown key (expected {', '.join(known)})")


def _session(problems: list[str], path: str, item: Any) -> ScriptedSession:
    if not isinstance(item, dict):
        problems.append(f"{path}: must be a mapping with {', '.join(SESSION_KEYS)}, got {item!r}")
        return ScriptedSession(0.0, 1.0, 1.0)
    _unknown_keys(problems, path, item, SESSION_KEYS)
    for key in SESSION_KEYS:
        if key not in item:
            problems.append(f"{path}.{key}: missing (seconds idle before, seconds charging, watts)")
    return ScriptedSession(
        after=_number(problems, f"{path}.after", item.get("after", 0), low=0, high=MAX_SECONDS, low_open=False),
        duration=_number(problems, f"{path}.duration", item.get("duration", 1), low=0, high=MAX_SECONDS, low_open=True),
        power=_number(problems, f"{path}.power", item.get("power", 1), low=0, high=MAX_POWER_W, low_open=True),
    )


def _charger(problems: list[str], path: str, item: Any) -> ScriptedCharger | None:
    if not isinstance(item, dict):
        problems.append(f"{path}: must be a mapping with name and sessions, got {item!r}")
        return None
    _unknown_keys(problems, path, item, ("name", "meter_start_kwh", "sessions"))
    name = item.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        problems.append(
            f"{path}.name: must be 1-63 letters, digits, '.', '_' or '-' (it is the URL path), got {name!r}"
        )
        name = ""
    meter = _number(
        problems, f"{path}.meter_start_kwh", item.get("meter_start_kwh", 0.0), low=0, high=1e9, low_open=False
    )
    sessions = item.get("sessions", [])
    if not isinstance(sessions, list):
        problems.append(f"{path}.sessions: must be a list of sessions, got {sessions!r}")
        sessions = []
    parsed = tuple(_session(problems, f"{path}.sessions[{i}]", s) for i, s in enumerate(sessions))
    return ScriptedCharger(name=name, meter_start_kwh=meter, sessions=parsed)


def parse_script(text: str, source: str = "<script>") -> Script:
    """A script from YAML text; raise :class:`ScriptError` listing every problem (key path, what is wrong)."""
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ScriptError(source, [f"{where}not valid YAML ({getattr(exc, 'problem', None) or exc})"]) from None
    if not isinstance(tree, dict) or not isinstance(tree.get("chargers"), list) or not tree["chargers"]:
        raise ScriptError(source, ["chargers: must be a non-empty list of chargers (name, sessions)"])
    problems: list[str] = []
    _unknown_keys(problems, "", tree, ("chargers",))
    problems = [p.removeprefix(".") for p in problems]
    chargers = [_charger(problems, f"chargers[{i}]", c) for i, c in enumerate(tree["chargers"])]
    seen: set[str] = set()
    for i, charger in enumerate(chargers):
        if charger is not None and charger.name:
            if charger.name in seen:
                problems.append(f"chargers[{i}].name: {charger.name!r} is used by an earlier charger")
            seen.add(charger.name)
    if problems:
        raise ScriptError(source, problems)
    return Script(chargers=tuple(c for c in chargers if c is not None), source=source)


def load_script(path: str | Path) -> Script:
    """Read and check a script file; raise :class:`ScriptError` naming the file on any problem."""
    source = str(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SCRIPT_BYTES + 1)
    except OSError as exc:
        raise ScriptError(source, [f"cannot read session script: {exc.strerror or exc}"]) from None
    if len(data) > MAX_SCRIPT_BYTES:
        raise ScriptError(source, [f"session script is larger than the limit of {MAX_SCRIPT_BYTES >> 20} MiB"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ScriptError(source, ["session script is not UTF-8 text"]) from None
    return parse_script(text, source)


# --- the simulated clock and the session log ------------------------------------------------------------------


class SimClock:
    """Unix seconds that run ``speed`` times as fast as real time, from the real time at creation."""

    def __init__(self, speed: float = 1.0, real: Callable[[], float] = time.time) -> None:
        self.speed = speed
        self._real = real
        self.epoch = real()

    def __call__(self) -> float:
        return self.epoch + (self._real() - self.epoch) * self.speed


class SessionLog:
    """JSON lines, one per session start or stop, flushed per line (a reader may follow it while it grows)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def write(self, event: Mapping[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(event) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


# --- the scripted device --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Planned:
    start: int  # Unix seconds, as served
    end: int
    power: float
    meter_start: float  # kWh, as served
    meter_stop: float


def _plan(spec: ScriptedCharger, origin: int) -> tuple[_Planned, ...]:
    plan, t, meter = [], float(origin), spec.meter_start_kwh
    for session in spec.sessions:
        start = t + session.after
        end = start + session.duration
        stop = meter + session.power * session.duration / 3_600_000
        # Served times are whole seconds; the meter is served rounded to 6 decimals, like the real device's.
        plan.append(_Planned(int(start), int(end), session.power, round(meter, 6), round(stop, 6)))
        t, meter = end, stop
    return tuple(plan)


@dataclass(slots=True)
class ScriptedSimCharger(SimCharger):
    """A simulated charger whose sessions follow a script; the grid (voltage, frequency) is simulated as usual."""

    plan: tuple[_Planned, ...] = ()
    meter_base: float = 0.0
    run: ScriptRun | None = None  # logs the events of all the run's chargers in time order
    events_done: int = 0  # start and stop events emitted so far: 2 per finished session
    drawn: float = 0.0  # A per phase in the running session

    def advance(self, now: float) -> None:
        """The state at ``now`` straight from the plan (exact at any time, however far the clock jumped)."""
        if self.last_step == 0.0:
            self.last_step = now
        self.last_step = max(self.last_step, now - MAX_GRID_STEPS)
        self._expire_limits(now)
        while self.last_step < now:
            self.last_step += min(1.0, now - self.last_step)
            self._step_frequency()
        if self.run is not None:
            self.run.emit_due(now)
        else:
            while self.next_event() <= now:
                self.emit_next()
        self._apply(now)

    def next_event(self) -> float:
        """When the next start or stop is due (simulated seconds; infinity after the last session)."""
        if self.events_done >= 2 * len(self.plan):
            return math.inf
        session = self.plan[self.events_done // 2]
        return float(session.end if self.events_done % 2 else session.start)

    def emit_next(self) -> dict[str, Any]:
        """The next start or stop event, counted as done."""
        session = self.plan[self.events_done // 2]
        event: dict[str, Any]
        if self.events_done % 2 == 0:
            event = {
                "event": "start",
                "charger": self.name,
                "start": float(session.start),
                "meter_start_kwh": session.meter_start,
            }
        else:
            event = {
                "event": "stop",
                "charger": self.name,
                "start": float(session.start),
                "end": float(session.end),
                "meter_start_kwh": session.meter_start,
                "meter_stop_kwh": session.meter_stop,
                "energy_kwh": round(session.meter_stop - session.meter_start, 6),
            }
        self.events_done += 1
        return event

    def _apply(self, now: float) -> None:
        energy, running, last = self.meter_base, None, None
        for session in self.plan:
            if now >= session.end:
                energy, last = session.meter_stop, session
            elif now >= session.start:
                energy = session.meter_start + session.power * (now - session.start) / 3_600_000
                running = session
                break
            else:
                break
        self.energy_kwh = energy
        shown = running or last
        if shown is not None:
            self.started_time, self.meter_start = shown.start, shown.meter_start
            self.ended_time, self.meter_stop = (0, 0.0) if running else (shown.end, shown.meter_stop)
            self.start_reason = "CablePluggedIn"
            self.stop_reason = "" if running else "EVDisconnected"
            self.used_phases = "111"
        self.state = CHARGING if running else IDLE
        power = running.power if running else 0.0
        self.drawn = power / (self.grid_phases * 230.0 * POWER_FACTOR)
        self._step_phases(now, lambda p: self.drawn if p < self.grid_phases else 0.0)
        self.power = power

    def enter(self, state: str, now: float) -> None:
        """Only the script starts and stops sessions (a reboot fault does not start one here)."""

    def _target_current(self) -> float:
        """What the controller allocates: what the script draws (limits do not change a script), else 16 A."""
        return math.ceil(self.drawn * 10) / 10 if self.drawn else min(16.0, self.max_current)


@dataclass(slots=True)
class ScriptRun:
    """The scripted chargers of one simulator app and the session log they write, in time order."""

    chargers: list[ScriptedSimCharger] = field(default_factory=list)
    log: SessionLog | None = None

    def next_event(self) -> float:
        return min((c.next_event() for c in self.chargers), default=math.inf)

    def emit_due(self, now: float) -> None:
        """Log every event due by ``now``, earliest first (ties in script order)."""
        while True:
            due = [c for c in self.chargers if c.next_event() <= now]
            if not due:
                return
            event = min(due, key=lambda c: (c.next_event(), c.index)).emit_next()
            if self.log is not None:
                self.log.write(event)

    def advance(self, now: float) -> None:
        for charger in self.chargers:
            charger.advance(now)


def start_run(script: Script, now: float, seed: int = 1, session_log: str | Path | None = None) -> ScriptRun:
    """The script's chargers, their schedules counted from the first whole second at or after ``now``."""
    run = ScriptRun(log=SessionLog(session_log) if session_log is not None else None)
    origin = math.ceil(now)
    for i, spec in enumerate(script.chargers):
        charger = ScriptedSimCharger(
            name=spec.name,
            index=i,
            generation=2 if i % 3 == 1 else 1,  # both firmware generations' field names, as generated chargers
            grid_phases=3,  # three phases: up to 22 kW at 32 A
            max_current=32.0,
            rng=random.Random(seed * 1000 + i),  # noqa: S311 - simulation, not cryptography
            energy_kwh=round(spec.meter_start_kwh, 6),
            plan=_plan(spec, origin),
            meter_base=round(spec.meter_start_kwh, 6),
            run=run,
        )
        run.chargers.append(charger)
    run.advance(now)
    return run
