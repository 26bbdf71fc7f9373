"""The meter at a period's bounds and where a charger's labels changed: raw meter samples, each with the time
it was scraped, so that the report can say when a reading was taken and flag a bound without one.

Where no scrape lies within the look back of a bound, the reading used is the first after it (at a period's
start) or the last before it (at its end of a period that is over), found by narrowing windows of
``count_over_time`` (a hundred windows a query, so a year narrows to an hour in three queries) before the raw
samples of that last hour are read.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from exporter.report import promql
from exporter.report.client import PromClient
from exporter.report.series import Key, key_of

WINDOWS = 100  # count_over_time windows per narrowing query
RAW_SPAN = 3_600.0  # below this the raw samples are read
Labels = Callable[[Key], Key]


@dataclass(frozen=True, slots=True)
class Reading:
    t: float  # when the meter was scraped
    joules: float
    labels: Key  # the charger's labels at that scrape


def samples(client: PromClient, matchers: Sequence[str], at: float, seconds: float, labels: Labels) -> list[Reading]:
    """Every meter sample in (at - seconds, at], oldest first."""
    out = []
    for series in client.query(promql.meter_samples(matchers, seconds), at):
        charger = labels(key_of(series.get("metric", {})))
        for t, v in series.get("values", []):
            value = float(v)
            if math.isfinite(value):
                out.append(Reading(float(t), value, charger))
    out.sort(key=lambda r: r.t)
    return out


def latest(readings: Sequence[Reading], before: float | None = None) -> dict[Key, Reading]:
    """Each label set's last reading (strictly before ``before`` if given)."""
    out: dict[Key, Reading] = {}
    for r in readings:
        if before is None or r.t < before:
            out[r.labels] = r
    return out


def edge(
    client: PromClient,
    matchers: Sequence[str],
    lo: float,
    hi: float,
    wanted: Collection[Key],
    labels: Labels,
    *,
    first: bool,
) -> Reading | None:
    """The first (or last) meter reading of the ``wanted`` label sets in (lo, hi]."""
    while hi - lo > RAW_SPAN:
        step = math.ceil((hi - lo) / WINDOWS)
        n = math.ceil((hi - lo) / step)
        # windows (T - step, T] laid from the side searched from
        a, b = (lo + step, lo + n * step) if first else (hi - (n - 1) * step, hi)
        hits = []
        for series in client.query_range(promql.meter_count(matchers, step), a, b, step):
            if labels(key_of(series.get("metric", {}))) not in wanted:
                continue
            hits += [float(t) for t, v in series.get("values", []) if float(v) > 0]
        if not hits:
            return None
        at = min(hits) if first else max(hits)
        lo, hi = max(lo, at - step), min(hi, at)
    found = [r for r in samples(client, matchers, hi, hi - lo, labels) if r.labels in wanted and lo < r.t <= hi]
    if not found:
        return None
    return found[0] if first else found[-1]
