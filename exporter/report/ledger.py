"""The ledger's reconstruction: observations of a charger's session series in, session rows and summary rows out.

Pure functions, no I/O: the same code reads a raw sequence of scrapes (the unit tests) and the sparse observations
the queries pick out of a long history (exporter.report.queries). An observation is what the exporter exposed at one
scrape: ``pulsatrix_session_start_timestamp_seconds`` (the key: a session *is* its start time),
``..._end_timestamp_seconds`` (absent while the session runs), ``..._meter_start_joules``, ``..._energy_joules``
(live while running, ``meterStop - meterStart`` once ended) and the reasons of ``pulsatrix_session_info``.

The rules (the README states them):

* **sessions**: one row per session that *started* in the period, from the last observation of that session
  (start value): its kWh is the device's ``meterStop - meterStart`` and its start and end the device's own times.
  A session last seen running is ``running`` if it is the charger's latest and was seen recently, otherwise
  ``incomplete`` (its end was never scraped): no end and no energy are invented for it.
* **summary**: the meter's rise within the period, from the meter at the period's bounds and the session readings
  inside it; a decrease (a replaced or reset meter) is never counted and is flagged, so energy is never negative
  or inflated. A session across a bound is split there, so the months of a year add up to the year.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, Decimal

from exporter.report.series import Key

J_PER_KWH = 3_600_000.0
# A pulsatrix controller switches at most 32 A on three phases at 230 V: 22 kW. A session whose meter rose faster
# than twice that was measured across a meter replacement (meterStop read from another meter): not energy.
MAX_PLAUSIBLE_W = 44_000.0
# A device time is implausible before 2010 (a controller that lost its clock counts from 1970, or reports 0) or
# more than five minutes ahead of the report's first look at the session (an hour ahead: local time sent as Unix
# time). A look is at most 6 min after the scrape it shows (the raw series' 5-min steps with their minute of
# overlap), so a start more than 11 min before the look before it is behind by more than five minutes too.
EPOCH_2010 = 1_262_304_000.0
CENT = Decimal("0.01")
CLOCK_SLACK = 300.0
LOOK_DELAY = 360.0


@dataclass(frozen=True, slots=True)
class Obs:
    """One look at a charger's session series (all read from the same scrape)."""

    t: float  # when it was seen (Unix seconds)
    start: float | None
    end: float | None = None
    meter_start_j: float | None = None
    energy_j: float | None = None
    start_reason: str = ""
    stop_reason: str = ""
    # A scrape as it was (False: rebuilt from recorded changes or a step's look back, whose time is not when the
    # charger last answered): only a live look tells a running session from one whose end was never scraped.
    live: bool = True
    labels: Key = ()  # the charger's labels at that scrape (exporter.report.identity)


@dataclass(frozen=True, slots=True)
class Session:
    start: float
    end: float | None
    status: str  # "ended", "running" or "incomplete"
    meter_start_kwh: float | None
    meter_stop_kwh: float | None
    energy_kwh: float | None
    start_reason: str
    stop_reason: str
    flags: tuple[str, ...] = ()
    last_seen: float = 0.0
    labels: Key = ()  # the charger's labels at the first scrape that showed the session

    @property
    def duration_s(self) -> float | None:
        return None if self.end is None else max(0.0, self.end - self.start)


@dataclass(frozen=True, slots=True)
class Summary:
    energy_kwh: float
    sessions: int
    meter_start_kwh: float | None
    meter_end_kwh: float | None
    flags: tuple[str, ...] = ()
    meter_start_time: float | None = None  # when the first and the last reading were taken
    meter_end_time: float | None = None


@dataclass(slots=True)
class _Group:
    start: float  # the device's startedTime, or the first look's time when that is implausible
    first: Obs
    last: Obs
    before: float | None  # the look before the first one (another session, or none)
    reasons: list[tuple[str, str]] = field(default_factory=list)
    end_seen: float | None = None  # the first look that showed the end
    last_ended: Obs | None = None  # the last look that showed it ended: a session never runs again once ended
    live: Obs | None = None  # the charger's latest scrape, where it shows this session
    clock: bool = False  # the device's times are implausible: the looks' times are used instead
    device_start: float = 0.0


def session_id(ob: Obs) -> tuple[float, float | None] | None:
    """What tells sessions apart: the device's start time, and where that is implausible (firmware that sends 0
    for every session) also the meter start."""
    if ob.start is None:
        return None
    if ob.start < EPOCH_2010:
        return (ob.start, ob.meter_start_j)
    return (ob.start, None)


def reconstruct(observations: Iterable[Obs], horizon: float, fresh: float) -> list[Session]:
    """Every session the observations show, oldest first.

    ``horizon`` is the latest time the observations could reach (now, or the end of what was queried) and
    ``fresh`` how old the last look may be for a session without an end to count as still running.
    """
    # the hot loop of a year's report (700,000 looks for 200 chargers): the session's key inline, a float where
    # the device's start is plausible
    groups: dict[object, _Group] = {}
    previous: float | None = None
    current: object = None
    owner: dict[float, object] = {}  # an end value belongs to the session it was first seen with
    for ob in sorted(observations, key=lambda o: o.t):
        start = ob.start
        if start is None:
            continue
        sid: object = start if start >= EPOCH_2010 else (start, ob.meter_start_j)
        end = ob.end
        if end is not None and owner.setdefault(end, sid) != sid:
            # a look back that still holds the previous session's end: this session is running
            ob = replace(ob, end=None, stop_reason="")  # noqa: PLW2901
            end = None
        group = groups.get(sid)
        if group is None:
            group = groups[sid] = _Group(start, ob, ob, previous if current != sid else None, device_start=start)
        group.last = ob
        if ob.live:
            group.live = ob
        group.reasons.append((ob.start_reason, ob.stop_reason))
        if end is not None and end >= start:
            group.last_ended = ob
            if group.end_seen is None:
                group.end_seen = ob.t
        previous, current = ob.t, sid
    for group in groups.values():
        _check_clock(group)
    ordered = sorted(groups.values(), key=lambda g: g.start)
    out: list[Session] = []
    for i, group in enumerate(ordered):
        latest = i == len(ordered) - 1
        out.append(_session(group, latest=latest, horizon=horizon, fresh=fresh))
    return _flag_meter_changes(out)


def _check_clock(group: _Group) -> None:
    """Implausible device times: the session is placed at the looks that saw it begin and end."""
    start, seen = group.start, group.first.t
    wrong = start < EPOCH_2010 or start > seen + CLOCK_SLACK
    wrong = wrong or (group.before is not None and start < group.before - CLOCK_SLACK - LOOK_DELAY)
    end = group.last.end
    if end is not None and group.end_seen is not None:
        wrong = wrong or end > group.end_seen + CLOCK_SLACK or end < EPOCH_2010
    if wrong:
        group.clock, group.start = True, seen


def _session(group: _Group, *, latest: bool, horizon: float, fresh: float) -> Session:
    # A later look without the end is a look back at an older scrape (a label set no longer scraped, looked at
    # from a later step): the session ended all the same.
    ob = group.last if group.last.end is not None or group.last_ended is None else group.last_ended
    clock = ("device_clock",) if group.clock else ()
    start_reason = next((r for r, _ in reversed(group.reasons) if r), "")
    meter_start = None if ob.meter_start_j is None else ob.meter_start_j / J_PER_KWH
    if ob.end is None or ob.end < group.device_start:
        # running only while the charger's latest scrape (recent) shows it running: a look rebuilt from the rules'
        # changes or a step's look back may be stamped later, but is not a scrape
        live = group.live
        running = latest and live is not None and live.end is None and horizon - live.t <= fresh
        energy = live.energy_j / J_PER_KWH if running and live is not None and live.energy_j is not None else None
        return Session(
            group.start,
            None,
            "running" if running else "incomplete",
            meter_start,
            None,
            energy,
            start_reason,
            "",
            clock,
            ob.t,
            group.first.labels,
        )
    stop_reason = ob.stop_reason or next((s for _, s in reversed(group.reasons) if s), "")
    flags: tuple[str, ...] = clock
    end = group.end_seen if group.clock and group.end_seen is not None else ob.end
    energy = None if ob.energy_j is None else ob.energy_j / J_PER_KWH
    duration = end - group.start
    if energy is None or energy < 0 or energy * J_PER_KWH > MAX_PLAUSIBLE_W * max(duration, 1.0) + 360_000:
        # The exporter drops a negative meterStop - meterStart; a jump no charger can draw is a meter swap.
        energy, flags = None, (*clock, "meter_reset")
    meter_stop = None if energy is None or meter_start is None else meter_start + energy
    return Session(
        group.start,
        end,
        "ended",
        meter_start,
        meter_stop,
        energy,
        start_reason,
        stop_reason,
        flags,
        ob.t,
        group.first.labels,
    )


def _flag_meter_changes(sessions: list[Session]) -> list[Session]:
    """A session whose meter starts below where the previous one stopped ran on a replaced or reset meter."""
    out: list[Session] = []
    previous: float | None = None
    for session in sessions:
        s = session
        if previous is not None and s.meter_start_kwh is not None and s.meter_start_kwh < previous - 1e-6:
            s = replace(s, flags=tuple(dict.fromkeys((*s.flags, "meter_reset"))))
        if s.meter_stop_kwh is not None:
            previous = s.meter_stop_kwh
        elif s.meter_start_kwh is not None:
            previous = s.meter_start_kwh
        out.append(s)
    return out


def in_period(sessions: Sequence[Session], start: float, end: float) -> list[Session]:
    """The sessions that started in [start, end): the sessions view's rule."""
    return [s for s in sessions if start <= s.start < end]


def summarize(
    sessions: Sequence[Session],
    start: float,
    end: float,
    meter_at_start_j: float | None,
    meter_at_end_j: float | None,
    *,
    start_time: float | None = None,
    end_time: float | None = None,
) -> Summary:
    """The meter's rise in [start, end) and the sessions started in it.

    The readings in time order are the meter at the start bound, each session's meter start and stop that fall
    inside the period, and the meter at the end bound. Each rise between two readings is counted; a fall or a rise
    faster than 44 kW (a meter replaced or reset) is not, and flags the row: what ran between the last reading on
    the old meter and the first on the new one is unknown, so it is left out rather than guessed.
    """
    readings = summary_readings(
        sessions, start, end, meter_at_start_j, meter_at_end_j, start_time=start_time, end_time=end_time
    )
    energy = 0.0
    flags: list[str] = []
    for (ta, a, _), (tb, b, _) in itertools.pairwise(readings):
        if b < a - 1e-6 or (b - a) * J_PER_KWH > MAX_PLAUSIBLE_W * max(tb - ta, 1.0) + 360_000:
            flags.append("meter_reset")  # fell, or rose faster than a charger can draw: another meter
        elif b > a:
            energy += b - a
    started = in_period(sessions, start, end)
    if any("meter_reset" in s.flags for s in started):
        flags.append("meter_reset")
    if any(s.status == "incomplete" for s in started):
        flags.append("incomplete")
    if any("device_clock" in s.flags for s in started):
        flags.append("device_clock")
    first, last = (readings[0], readings[-1]) if readings else (None, None)
    return Summary(
        energy_kwh=round(energy, 6),
        sessions=len(started),
        meter_start_kwh=None if first is None else first[1],
        meter_end_kwh=None if last is None else last[1],
        flags=tuple(dict.fromkeys(flags)),
        meter_start_time=None if first is None else first[2],
        meter_end_time=None if last is None else last[2],
    )


def summary_readings(
    sessions: Sequence[Session],
    start: float,
    end: float,
    meter_at_start_j: float | None,
    meter_at_end_j: float | None,
    *,
    start_time: float | None = None,
    end_time: float | None = None,
) -> list[tuple[float, float, float]]:
    """The meter readings a summary is made of, in time order: (when it is placed, kWh, when it was taken), a
    bound's reading placed at the bound (also what exporter.report.costs splits at price changes)."""
    # (when it is placed, value, when it was taken). The start's reading is placed at the start, or where it was
    # taken when that is later (no scrape before the start: a session reading before it still counts); the end's
    # at the end, and a session reading after it was taken belongs to the next period, whose start is that
    # same reading (so that the periods of a year add up to the year).
    taken_end = end if end_time is None or meter_at_end_j is None else end_time
    readings: list[tuple[float, float, float]] = []
    if meter_at_start_j is not None:
        taken = start if start_time is None else start_time
        readings.append((max(start, taken), meter_at_start_j / J_PER_KWH, taken))
    for s in sessions:
        if start <= s.start < end and s.start <= taken_end and s.meter_start_kwh is not None:
            readings.append((s.start, s.meter_start_kwh, s.start))
        if s.end is not None and start <= s.end < end and s.end <= taken_end and s.meter_stop_kwh is not None:
            readings.append((s.end, s.meter_stop_kwh, s.end))
    if meter_at_end_j is not None:
        readings.append((end, meter_at_end_j / J_PER_KWH, end if end_time is None else end_time))
    readings.sort(key=lambda r: r[0])
    return readings


def add(a: Summary, b: Summary) -> Summary:
    """Summed rows (per site or label): energy and sessions add; meter readings do not belong to a group."""
    return Summary(
        round(a.energy_kwh + b.energy_kwh, 6),
        a.sessions + b.sessions,
        None,
        None,
        tuple(dict.fromkeys((*a.flags, *b.flags))),
    )


def cost(energy_kwh: float | None, price: float | None) -> Decimal | None:
    """kWh × price rounded to the cent, half away from zero (never float rounding's half to even on a binary
    approximation: 0.125 × 1 is 0.13). The kWh is taken as printed to the Wh (3 decimals)."""
    if energy_kwh is None or price is None or not math.isfinite(energy_kwh):
        return None
    kwh = Decimal(repr(round(energy_kwh, 3)))
    return (kwh * Decimal(repr(price))).quantize(CENT, rounding=ROUND_HALF_UP)
