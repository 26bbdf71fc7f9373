"""What pricing asks the server: the price series (``--price-series EXPR``) and the meter at each price change.

The price at a moment is the price series' last sample at or before it. For an expression that is a plain series
selector (what a price exporter's gauge is) the raw samples are read, a week at a time (``EXPR[7d]`` at each week's
end), so a change is placed at the very scrape that first showed it; any other expression (arithmetic, a unit
conversion) cannot be asked for raw samples, so it is evaluated once a minute (``query_range``, step 60 s).

The meter at a change is read as at a period's bound: ``last_over_time(meter[lookback])`` at that moment, one
instant query per change time for all chargers at once; when the change times lie on a grid of whole minutes (a
tariff's windows) they are asked as one ``query_range`` on that grid instead.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import reduce

from exporter.report.client import PromClient
from exporter.report.pricing import Steps
from exporter.report.series import METER, PARALLEL, Key, key_of

CHUNK = 7 * 86_400.0
BEFORE = 7 * 86_400.0  # how far before the period the price in force at its start is looked for
EVAL_STEP = 60.0  # an expression that is not a selector: evaluated once a minute
MAX_POINTS = 11_000
# a metric name with optional label matchers, or label matchers alone: what can take a range ("x[7d]")
_MATCHERS = r"""\{(?:[^{}"'\\]|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')*\}"""
SELECTOR = re.compile(rf"^\s*(?:[a-zA-Z_:][a-zA-Z0-9_:]*\s*(?:{_MATCHERS})?|{_MATCHERS})\s*$")


class PriceSeriesError(ValueError):
    """The expression does not give one price series: one line, exit 2, nothing written."""


@dataclass(frozen=True, slots=True)
class PriceSeries:
    """The price per kWh over time: the series' samples where its value changed (the first one included), so the
    price at a moment is its last sample at or before it; read up to ``until``."""

    expr: str
    steps: Steps
    labels: str = ""
    until: float = math.inf
    key: Key = ()

    @classmethod
    def from_samples(cls, expr: str, samples: Sequence[tuple[float, float]], labels: str = "") -> PriceSeries:
        return cls(expr, Steps.of(sorted(samples)), labels)

    def price_at(self, t: float) -> float | None:
        return self.steps.price_at(t)

    def changes(self, start: float, end: float) -> list[tuple[float, float | None]]:
        return self.steps.changes(start, end)


def fetch_price_series(client: PromClient, expr: str, start: float, end: float) -> PriceSeries:
    """The series' samples from a week before ``start`` to ``end``; :class:`PriceSeriesError` unless exactly one
    series comes back."""
    names, samples = _samples(client, expr, start - BEFORE, end)
    if len(names) != 1:
        found = "no series" if not names else f"{len(names)} series"
        raise PriceSeriesError(
            f"--price-series: {expr!r} returned {found} from {client.shown} between a week before the period and its "
            "end; it must return exactly one (the price per kWh)"
        )
    (key,) = names
    shown = ",".join(f'{k}="{v}"' for k, v in key if v)
    return PriceSeries(expr, Steps.of(sorted(samples.items())), shown, end, key)


def extend(client: PromClient, series: PriceSeries, end: float) -> PriceSeries:
    """The series read on to ``end`` (sessions followed past the period to their end need the prices then)."""
    if end <= series.until:
        return series
    names, samples = _samples(client, series.expr, series.until, end)
    if names - {series.key}:
        raise PriceSeriesError(
            f"--price-series: {series.expr!r} returned another series after {series.until:.0f}: it must return "
            "exactly one (the price per kWh)"
        )
    later = sorted((t, v) for t, v in samples.items() if t > series.until)
    points = [*zip(series.steps.times, series.steps.prices, strict=True), *later]
    return PriceSeries(series.expr, Steps.of(points), series.labels, end, series.key)


def _samples(client: PromClient, expr: str, first: float, end: float) -> tuple[set[Key], dict[float, float]]:
    bounds = []
    t = first
    while t < end:
        bounds.append((t, min(end, t + CHUNK)))
        t += CHUNK
    if SELECTOR.match(expr):
        # a plain selector: its raw samples (no parentheses: Prometheus takes a range only on a selector)
        parts = [client.query(f"{expr.strip()}[{int(b - a)}s]", b) for a, b in bounds]
    else:
        chunks = _range_chunks(first - first % EVAL_STEP, end, EVAL_STEP)
        parts = [client.query_range(expr, a, b, EVAL_STEP) for a, b in chunks]
    names: set[Key] = set()
    samples: dict[float, float] = {}
    for part in parts:
        for series in part:
            names.add((*key_of(series.get("metric", {})), ("__name__", series.get("metric", {}).get("__name__", ""))))
            for at, value in series.get("values", []):
                v = float(value)
                if math.isfinite(v):
                    samples[float(at)] = v
    return names, samples


def _range_chunks(start: float, end: float, step: float) -> list[tuple[float, float]]:
    span = step * (MAX_POINTS - 1)
    out = []
    t = start
    while t <= end:
        out.append((t, min(end, t + span)))
        t += span + step
    return out


def meters_at(
    client: PromClient, matchers: Sequence[str], times: Sequence[float], lookback: float
) -> dict[Key, dict[float, float]]:
    """Each charger's meter (kWh) at each of ``times``: its last scrape at or before it, within ``lookback``."""
    wanted = sorted({round(t, 3) for t in times})
    out: dict[Key, dict[float, float]] = {}
    if not wanted:
        return out
    selector = METER + ("{" + ",".join(matchers) + "}" if matchers else "")
    expr = f"last_over_time({selector}[{int(lookback)}s])"
    step = _grid(wanted)
    if step is not None and (wanted[-1] - wanted[0]) / step <= 20 * len(wanted):
        for a, b in _range_chunks(wanted[0], wanted[-1], step):
            for series in client.query_range(expr, a, b, step):
                per = out.setdefault(key_of(series.get("metric", {})), {})
                for at, value in series.get("values", []):
                    per[round(float(at), 3)] = float(value) / 3_600_000.0
        keep = set(wanted)
        return {key: {t: v for t, v in per.items() if t in keep} for key, per in out.items()}
    with ThreadPoolExecutor(PARALLEL) as pool:
        answers = list(pool.map(lambda t: (t, client.query(expr, t)), wanted))
    for t, result in answers:
        for series in result:
            out.setdefault(key_of(series.get("metric", {})), {})[t] = float(series["value"][1]) / 3_600_000.0
    return out


def _grid(times: Sequence[float]) -> float | None:
    """The largest step of whole minutes on which every time lies, counted from the first; None if there is none."""
    if len(times) < 2 or any(t != int(t) for t in times):
        return None
    step = reduce(math.gcd, (int(t - times[0]) for t in times[1:]))
    return float(step) if step >= 60 and step % 60 == 0 else None
