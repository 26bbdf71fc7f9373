"""Cost at the price in force when each kWh was charged: energy split at price changes by the meter, then priced.

A row's energy is the rise between readings of the meter (a session's ``meterStart`` and ``meterStop``; a summary's
meter at the period's bounds and the session readings inside it). At each moment in between where the price
changes, the meter is read as at a period's bound: its last scrape at or before that moment. The energy between two
changes is the meter's rise between them, and it is priced at the price in force from the first of the two. Each
reading at a change is held between the readings around it, so a row's pieces always add up to its kWh, whatever
the scrapes in between showed.

A row whose energy is unknown or flagged has no cost, and neither has one whose price is unknown for a part of it
(before a tariff's first ``from``, before a price series' first sample) or whose meter was not scraped near a price
change inside it (``unpriced``): a guessed cost is worse than none.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol

CENT = Decimal("0.01")
UNPRICED = "unpriced"  # the flag of a row whose cost cannot be told


class Prices(Protocol):
    """Where the price changes: ``[(start, price), (t1, price1), ...]`` for (start, end); a price of None is
    unknown."""

    def changes(self, start: float, end: float) -> list[tuple[float, float | None]]: ...


@dataclass(frozen=True, slots=True)
class Constant:
    """``--price``: one price at every moment."""

    price: float

    def changes(self, start: float, end: float) -> list[tuple[float, float | None]]:
        return [(start, self.price)]


@dataclass(frozen=True, slots=True)
class Steps:
    """Prices as the moments they change and the price from each on, in time order (a price of None: unknown);
    answers ``changes`` by bisection, so a year of rows does not walk a year of prices once per row."""

    times: tuple[float, ...]
    prices: tuple[float | None, ...]

    @classmethod
    def of(cls, points: Sequence[tuple[float, float | None]]) -> Steps:
        """From (t, price) points in time order, keeping only those where the price changes."""
        times: list[float] = []
        prices: list[float | None] = []
        for t, price in points:
            if not prices or price != prices[-1]:
                times.append(t)
                prices.append(price)
        return cls(tuple(times), tuple(prices))

    def price_at(self, t: float) -> float | None:
        i = bisect.bisect_right(self.times, t) - 1
        return self.prices[i] if i >= 0 else None

    def changes(self, start: float, end: float) -> list[tuple[float, float | None]]:
        out: list[tuple[float, float | None]] = [(start, self.price_at(start))]
        i, j = bisect.bisect_right(self.times, start), bisect.bisect_left(self.times, end)
        out += [(self.times[k], self.prices[k]) for k in range(i, j)]
        return out


def precomputed(prices: Prices, start: float, end: float) -> Prices:
    """``prices`` worked out once for [start, end]: the changes of any part of it are then a bisection."""
    if isinstance(prices, Constant | Steps):
        return prices
    return Steps.of(prices.changes(start, end))


@dataclass(frozen=True, slots=True)
class Piece:
    start: float
    end: float
    energy_kwh: float
    price: float


@dataclass(frozen=True, slots=True)
class Cost:
    """A row's cost: money to the cent, the average price (cost ÷ kWh), and the pieces it was made of."""

    cost: Decimal | None
    avg_price: Decimal | None
    pieces: tuple[Piece, ...] = ()
    flags: tuple[str, ...] = ()
    exact: Decimal | None = None  # before rounding: what a group adds up


NO_COST = Cost(None, None)

# The meter of one charger at a moment (its last scrape at or before it), None when it was not scraped near it.
MeterAt = Callable[[float], float | None]


def split(
    readings: Sequence[tuple[float, float]], changes: Sequence[tuple[float, float | None]], meter_at: MeterAt
) -> list[Piece] | None:
    """The rises between ``readings`` (time, kWh; in time order, never falling), cut at every price change between
    them; None when a price or a meter reading at a change is unknown."""
    pieces: list[Piece] = []
    inner = sorted(t for t, _ in changes if readings and readings[0][0] < t < readings[-1][0])
    for (ta, a), (tb, b) in itertools.pairwise(readings):
        cuts = [t for t in inner if ta < t < tb]
        t0, m0 = ta, a
        for t in [*cuts, tb]:
            if t == tb:
                m = b
            else:
                seen = meter_at(t)
                if seen is None:
                    return None
                m = min(max(seen, m0), b)  # held between the readings around it: the pieces add up to b - a
            price = price_at(changes, t0)
            if price is None:
                return None
            pieces.append(Piece(t0, t, round(m - m0, 6), price))  # the meter counts Wh: 6 decimals are exact
            t0, m0 = t, m
    return pieces


def price_at(changes: Sequence[tuple[float, float | None]], t: float) -> float | None:
    """The price in force at ``t``: that of the last change at or before it."""
    found: float | None = None
    seen = False
    for at, price in changes:
        if at <= t:
            found, seen = price, True
        else:
            break
    return found if seen else None


def money(value: float | Decimal) -> Decimal:
    """To the cent, half up (0.125 is 0.13), from the float's shortest decimal form."""
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


def cost_of(
    readings: Sequence[tuple[float, float]],
    prices: Prices,
    meter_at: MeterAt,
    *,
    known: bool = True,
) -> Cost:
    """The cost of the energy between ``readings``; ``known`` False (energy unknown or flagged): no cost."""
    if not known:
        return NO_COST
    if len(readings) < 2:  # no rise between readings: nothing was charged
        return Cost(Decimal("0.00"), None, exact=Decimal(0))
    changes = prices.changes(readings[0][0], readings[-1][0])
    pieces = split(readings, changes, meter_at)
    if pieces is None:
        return Cost(None, None, (), (UNPRICED,))
    if isinstance(prices, Constant):  # as exporter.report.ledger.cost: the kWh as printed (to the Wh) × price
        exact = Decimal(repr(round(sum(p.energy_kwh for p in pieces), 3))) * Decimal(repr(prices.price))
    else:
        exact = sum((Decimal(str(p.energy_kwh)) * Decimal(str(p.price)) for p in pieces), Decimal(0))
    cost = money(exact)
    energy = Decimal(str(round(sum(p.energy_kwh for p in pieces), 6)))
    avg = (exact / energy).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP) if energy > 0 else None
    return Cost(cost, avg, tuple(pieces), exact=exact)


def total(costs: Sequence[Cost], energy_kwh: float) -> Cost:
    """A group's cost (``--by``): its rows' unrounded costs added, rounded once to the cent, as the ledger rounds a
    group's kWh once; None if any row has none."""
    if any(c.exact is None for c in costs):
        flags = tuple(dict.fromkeys(f for c in costs for f in c.flags))
        return Cost(None, None, (), flags)
    exact = sum((c.exact for c in costs if c.exact is not None), Decimal(0))
    energy = Decimal(str(round(energy_kwh, 6)))
    avg = (exact / energy).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP) if energy > 0 else None
    return Cost(money(exact), avg, exact=exact)


def meter_lookup(samples: Mapping[float, float]) -> MeterAt:
    """``meter_at`` from the meter readings fetched at the change times (exact times as keys)."""

    def at(t: float) -> float | None:
        return samples.get(round(t, 3))

    return at
