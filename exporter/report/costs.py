"""Each row's cost: the ledger's rows (exporter.report.ledger) priced by exporter.report.pricing, with the meter read
at every price change inside them (exporter.report.pricequeries).

A session's readings are its ``meterStart`` at its start and ``meterStop`` at its end (a running one's live energy
at its last look); a charger's summary readings are the ledger's own (the meter at the period's bounds and the
session readings inside it), so a summary's pieces add up to exactly its ``energy_kwh``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from exporter.report import identity, ledger
from exporter.report.client import PromClient
from exporter.report.periods import Period
from exporter.report.pricequeries import PriceSeries, extend, meters_at
from exporter.report.pricing import NO_COST, Constant, Cost, Prices, cost_of, meter_lookup, precomputed
from exporter.report.queries import History
from exporter.report.series import Key


@dataclass(slots=True)
class Costs:
    """Each session's cost by (charger's index in the history, session start), each summary part's by (charger's
    index, part's index)."""

    sessions: dict[tuple[int, float], Cost] = field(default_factory=dict)
    parts: dict[tuple[int, int], Cost] = field(default_factory=dict)
    price: float | None = None  # --price: a group's cost is its kWh × price, as exporter.report.ledger.cost

    def session(self, charger: int, start: float) -> Cost:
        return self.sessions.get((charger, start), NO_COST)

    def part(self, charger: int, part: int) -> Cost:
        return self.parts.get((charger, part), NO_COST)


def session_readings(s: ledger.Session) -> list[tuple[float, float]]:
    """meterStart at the start, meterStart + energy at the end (a running session's: at its last look). Without a
    meterStart the readings are relative (0 and the energy): priced at one price, unpriced across a change (no
    meter reading there can be placed between them)."""
    if s.energy_kwh is None:
        return []
    end = s.end if s.end is not None else s.last_seen
    base = 0.0 if s.meter_start_kwh is None else s.meter_start_kwh
    return [(s.start, base), (max(end, s.start), base + s.energy_kwh)]


# Flags that say a row's energy is not what was charged: such a row has no cost. The others say where a figure
# came from (device_clock, no_data_at_start/end: the history begins or ends inside the period, period_open): the
# energy is still the meter's, and it is priced.
UNKNOWN_ENERGY = frozenset({"meter_reset", "incomplete"})


def _priced_session(s: ledger.Session) -> bool:
    return s.energy_kwh is not None and not UNKNOWN_ENERGY & set(s.flags) and s.status in ("ended", "running")


def price_history(
    client: PromClient,
    history: History,
    period: Period,
    prices: Prices,
    matchers: Sequence[str],
    lookback: float,
    drop: frozenset[str],
) -> Costs:
    """Every session started in the period and every charger's summary part, priced."""
    sessions: dict[tuple[int, float], list[tuple[float, float]]] = {}
    parts: dict[tuple[int, int], tuple[bool, list[tuple[float, float]]]] = {}
    for i, entry in enumerate(history.chargers):
        for s in ledger.in_period(entry.sessions, period.start, period.end):
            if _priced_session(s):
                sessions[(i, s.start)] = session_readings(s)
        for j, part in enumerate(entry.parts):
            a, b = part.meter_start, part.meter_end
            ja, jb = (None if a is None else a.joules), (None if b is None else b.joules)
            ta, tb = (None if a is None else a.t), (None if b is None else b.t)
            summary = ledger.summarize(entry.sessions, part.start, part.end, ja, jb, start_time=ta, end_time=tb)
            taken = ledger.summary_readings(entry.sessions, part.start, part.end, ja, jb, start_time=ta, end_time=tb)
            readings = [(t, kwh) for t, kwh, _ in taken]
            parts[(i, j)] = (not UNKNOWN_ENERGY & {*summary.flags, *part.flags}, readings)
    priced = [r for r in [*sessions.values(), *(r for _, r in parts.values())] if len(r) >= 2]
    if priced:  # the prices of the whole span worked out once: each row's changes are then a bisection
        first, last = min(r[0][0] for r in priced), max(r[-1][0] for r in priced)
        if isinstance(prices, PriceSeries):  # a session followed past the period needs the prices until its end
            prices = extend(client, prices, last + 1)
        prices = precomputed(prices, first, last)
    wanted: set[float] = set()
    for readings in priced:
        wanted.update(t for t, _ in prices.changes(readings[0][0], readings[-1][0])[1:])
    meter = _per_charger(history, meters_at(client, matchers, sorted(wanted), lookback), drop) if wanted else {}
    out = Costs(price=prices.price if isinstance(prices, Constant) else None)
    relative = {(i, s.start) for i, e in enumerate(history.chargers) for s in e.sessions if s.meter_start_kwh is None}
    for (i, start), points in sessions.items():
        lookup = (lambda t: None) if (i, start) in relative else meter_lookup(meter.get(i, {}))
        out.sessions[(i, start)] = cost_of(points, prices, lookup)
    for (i, j), (known, points) in parts.items():
        out.parts[(i, j)] = cost_of(points, prices, meter_lookup(meter.get(i, {})), known=known)
    return out


def _per_charger(
    history: History, readings: dict[Key, dict[float, float]], drop: frozenset[str]
) -> dict[int, dict[float, float]]:
    """The meter readings of each charger (its index in the history), from those of its series: the highest of its
    copies' at each moment (an HA pair's two copies read the same meter; the later scrape reads more)."""
    owner = {labels: i for i, entry in enumerate(history.chargers) for labels in entry.charger.label_sets}
    out: dict[int, dict[float, float]] = {}
    for key, values in readings.items():
        i = owner.get(identity.charger_labels(key, drop))
        if i is None:
            continue
        per = out.setdefault(i, {})
        for t, kwh in values.items():
            per[t] = max(kwh, per.get(t, kwh))
    return out
