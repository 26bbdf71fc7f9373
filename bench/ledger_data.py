"""Synthetic charger history for the report benchmark: what the exporter would have exposed, as OpenMetrics.

Per charger a timeline of sessions (about ``sessions_per_day``; idle gaps and durations drawn from a seeded
generator, 15 min to 3 h 30 min of charging at 3.7 to 11 kW), sampled every ``interval`` seconds into the series
``report`` reads: session start/end timestamps, the session's meter start, its energy, its info labels and the
charger's meter. Written family by family (OpenMetrics wants a family's samples together) for
``promtool tsdb create-blocks-from openmetrics``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TextIO

START_REASONS = ("Authorized", "RemoteStart", "EVConnected")
STOP_REASONS = ("EVDisconnected", "Local", "Remote")
SITES = ("depot-1", "depot-2", "depot-3", "depot-4")
J_PER_KWH = 3_600_000.0


@dataclass(frozen=True, slots=True)
class Session:
    start: int
    end: int
    meter_start_kwh: float
    power_w: float
    start_reason: str
    stop_reason: str

    @property
    def energy_kwh(self) -> float:
        return round(self.power_w * (self.end - self.start) / J_PER_KWH, 6)


def timeline(seed: int, t0: int, t1: int, sessions_per_day: float) -> list[Session]:
    rng = random.Random(seed)  # noqa: S311 (reproducible test data)
    meter = round(rng.uniform(0, 20_000), 6)
    mean_idle = max(900.0, 86_400 / sessions_per_day - 6_300)  # the mean session lasts 6,300 s
    out: list[Session] = []
    t = t0 + int(rng.uniform(0, 3_600))
    while True:
        t += int(600 + rng.expovariate(1 / mean_idle))
        duration = int(rng.uniform(900, 11_700))
        if t + duration >= t1 - 3_600:  # the last hour stays idle: every end is scraped before t1
            return out
        s = Session(
            t,
            t + duration,
            meter,
            rng.choice((3_700.0, 7_400.0, 11_000.0)),
            rng.choice(START_REASONS),
            rng.choice(STOP_REASONS),
        )
        out.append(s)
        meter = round(meter + s.energy_kwh, 6)
        t = s.end


def charger_name(i: int) -> str:
    return f"wb-{i:04d}"


def _labels(i: int) -> str:
    return f'charger="{charger_name(i)}",site="{SITES[i % len(SITES)]}",job="pulsatrix"'


def _samples(sessions: list[Session], t0: int, t1: int, interval: int) -> Iterator[tuple[int, Session | None, bool]]:
    """(time, the current or last session, running) at each scrape."""
    k = -1
    for t in range(t0, t1, interval):
        while k + 1 < len(sessions) and sessions[k + 1].start <= t:
            k += 1
        if k < 0:
            yield t, None, False
        else:
            s = sessions[k]
            yield t, s, t < s.end


def write_openmetrics(
    out: TextIO,
    chargers: int,
    t0: int,
    t1: int,
    interval: int,
    sessions_per_day: float,
    seed: int = 1,
    *,
    raw: Sequence[tuple[int, int]] | None = None,
    recorded: bool = False,
) -> int:
    """Write the families for every charger; returns the number of sessions.

    ``raw``: the time windows to write the raw series for (default: all of [t0, t1)). ``recorded``: also the
    series deploy/prometheus/ledger.yml records (each session series at the scrapes where it changed) and its
    heartbeat, as Prometheus evaluating those rules every ``interval`` would have written them.
    """
    windows = [(t0, t1)] if raw is None else list(raw)
    lines = {c: timeline(seed * 100_003 + c, t0, t1, sessions_per_day) for c in range(chargers)}
    for family, kind in FAMILIES:
        out.write(f"# TYPE {family} {kind}\n")
        for c in range(chargers):
            buf: list[str] = []
            for a, b in windows:
                buf.extend(_raw_lines(family, _labels(c), lines[c], a, b, interval))
            out.write("".join(buf))
    if recorded:
        _write_recorded(out, lines, t0, t1, interval)
    out.write("# EOF\n")
    return sum(len(v) for v in lines.values())


FAMILIES = (
    ("pulsatrix_session_start_timestamp_seconds", "gauge"),
    ("pulsatrix_session_end_timestamp_seconds", "gauge"),
    ("pulsatrix_session_meter_start_joules", "gauge"),
    ("pulsatrix_session_energy_joules", "gauge"),
    ("pulsatrix_session_info", "info"),
    ("pulsatrix_energy_imported_joules", "counter"),
)


def _raw_lines(family: str, labels: str, sessions: list[Session], a: int, b: int, interval: int) -> Iterator[str]:
    for t, s, running in _samples(sessions, a, b, interval):
        if s is None:
            if family == "pulsatrix_energy_imported_joules":
                yield f"{family}_total{{{labels}}} {_meter(sessions, t) * J_PER_KWH:.3f} {t}\n"
            continue
        value = _value(family, s, running, t)
        if value is None:
            continue
        if family == "pulsatrix_session_info":
            stop = "" if running else s.stop_reason
            yield f'{family}{{{labels},start_reason="{s.start_reason}",stop_reason="{stop}"}} 1 {t}\n'
        elif family == "pulsatrix_energy_imported_joules":
            yield f"{family}_total{{{labels}}} {value} {t}\n"
        else:
            yield f"{family}{{{labels}}} {value} {t}\n"


def _first_scrape(t: int, t0: int, interval: int) -> int:
    """The first scrape at or after t (scrapes at t0 + k * interval)."""
    return t0 + -(-(t - t0) // interval) * interval


def _write_recorded(out: TextIO, lines: dict[int, list[Session]], t0: int, t1: int, interval: int) -> None:
    out.write("# TYPE pulsatrix:ledger_recording gauge\n")
    out.write("".join(f"pulsatrix:ledger_recording 1 {t}\n" for t in range(t0, t1, interval)))
    names = (
        "start_timestamp_seconds:changes",
        "end_timestamp_seconds:changes",
        "meter_start_joules:changes",
        "energy_joules:ended_changes",
        "info:changes",
    )
    for name in names:
        family = f"pulsatrix_session_{name}"
        out.write(f"# TYPE {family} gauge\n")
        for c, sessions in lines.items():
            labels = _labels(c)
            buf: list[str] = []
            previous_meter: float | None = None
            for s in sessions:
                ts, te = _first_scrape(s.start, t0, interval), _first_scrape(s.end, t0, interval)
                if te >= t1:
                    break
                if name.startswith("start"):
                    buf.append(f"{family}{{{labels}}} {s.start} {ts}\n")
                elif name.startswith("end"):
                    buf.append(f"{family}{{{labels}}} {s.end} {te}\n")
                elif name.startswith("meter") and s.meter_start_kwh != previous_meter:
                    buf.append(f"{family}{{{labels}}} {s.meter_start_kwh * J_PER_KWH:.3f} {ts}\n")
                elif name.startswith("energy"):
                    buf.append(f"{family}{{{labels}}} {s.energy_kwh * J_PER_KWH:.3f} {te}\n")
                elif name.startswith("info"):
                    buf.append(f'{family}{{{labels},start_reason="{s.start_reason}",stop_reason=""}} 1 {ts}\n')
                previous_meter = s.meter_start_kwh
            if name.startswith("info"):
                _info_lines(buf, family, labels, sessions, t0, t1, interval)
            out.write("".join(buf))


def _info_lines(
    buf: list[str], family: str, labels: str, sessions: list[Session], t0: int, t1: int, interval: int
) -> None:
    """Info changes are series of their own (one per label set): group the samples per series, in time order."""
    per: dict[tuple[str, str], list[int]] = {}
    for s in sessions:
        ts, te = _first_scrape(s.start, t0, interval), _first_scrape(s.end, t0, interval)
        if te >= t1:
            break
        per.setdefault((s.start_reason, ""), []).append(ts)
        per.setdefault((s.start_reason, s.stop_reason), []).append(te)
    buf.clear()
    for (start, stop), times in per.items():
        buf.extend(f'{family}{{{labels},start_reason="{start}",stop_reason="{stop}"}} 1 {t}\n' for t in times)


def _meter(sessions: list[Session], t: int) -> float:
    return sessions[0].meter_start_kwh if sessions else 0.0


def _value(family: str, s: Session, running: bool, t: int) -> str | None:
    now_kwh = s.meter_start_kwh + (s.power_w * (t - s.start) / J_PER_KWH if running else s.energy_kwh)
    if family == "pulsatrix_session_start_timestamp_seconds":
        return str(s.start)
    if family == "pulsatrix_session_end_timestamp_seconds":
        return None if running else str(s.end)
    if family == "pulsatrix_session_meter_start_joules":
        return f"{s.meter_start_kwh * J_PER_KWH:.3f}"
    if family == "pulsatrix_session_energy_joules":
        return f"{(now_kwh - s.meter_start_kwh) * J_PER_KWH:.3f}"
    if family == "pulsatrix_energy_imported_joules":
        return f"{now_kwh * J_PER_KWH:.3f}"
    return "1"
