"""Reading the exporter's own session series: the scrapes where a session started or ended, never every sample.

A year at 15 s is 2.1 million samples per series and Prometheus refuses a ``query_range`` of more than 11,000
points, so the report never asks for the series as they are. It asks, in ranges of at most 11,000 steps of
``STEP`` (5 min: 38 days), only for the steps at which a session began or ended (exporter.report.promql's
``event_query``). The left side is a plain selector, so each returned step is the snapshot of the last scrape
before it (the session's start, end, meter start, energy and reasons, all from that scrape): exactly what the
reconstruction in exporter.report.ledger reads. About two steps per session come back instead of 105,000 steps per
series and year. The windows overlap by a minute so that a change between the last scrape of one step and the
first of the next is counted.

Two events in one step (a session ending and the next starting within 5 min, or a session shorter than 5 min)
would leave only the later snapshot; such a step is asked for again as raw samples (``[11m] @ t``) for that one
series, which is cheap because it is rare.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from exporter.report import promql
from exporter.report.client import PromClient
from exporter.report.ledger import Obs
from exporter.report.promql import OVERLAP, STEP
from exporter.report.series import END, ENERGY, INFO, METER_START, SESSION_SERIES, START, Key, key_of

MAX_POINTS = 11_000  # Prometheus' limit per series and query_range
Labels = Callable[[Key], Key]


def snapshots(result: Iterable[dict[str, Any]]) -> dict[Key, dict[float, dict[str, Any]]]:
    """Samples grouped per series key and time: {key: {t: {metric name: value or info labels}}}."""
    out: dict[Key, dict[float, dict[str, Any]]] = {}
    for series in result:
        metric = series.get("metric", {})
        name = metric.get("__name__", "")
        key = key_of(metric)
        points = series.get("values") or ([series["value"]] if "value" in series else [])
        per = out.setdefault(key, {})
        for t, v in points:
            if not math.isfinite(float(v)):  # a staleness marker (VictoriaMetrics returns them in raw samples)
                continue
            slot = per.setdefault(round(float(t), 3), {})
            if name == INFO:
                slot.setdefault(INFO, []).append((metric.get("start_reason", ""), metric.get("stop_reason", "")))
            else:
                slot[name] = float(v)
    return out


def latest(result: Iterable[dict[str, Any]], labels: Labels) -> dict[Key, Obs]:
    """Each series' last scrape among raw samples (a range vector up to now), at the time it was scraped: the
    server's own answer for "now". An instant query would stamp it with the query's time, and a series whose
    target was removed (a job moved to /probe) would look as current as the one that replaced it."""
    out: dict[Key, Obs] = {}
    for key, slots in snapshots(result).items():
        if not slots:  # only staleness markers or NaN
            continue
        t = max(slots)
        out[key] = obs_from(t, slots[t], labels(key), live=True)
    return out


def obs_from(t: float, slot: dict[str, Any], labels: Key, *, live: bool = False) -> Obs:
    start, end = slot.get(START), slot.get(END)
    reasons: list[tuple[str, str]] = slot.get(INFO, [])
    ended = end is not None and start is not None and end >= start
    # Within the lookback a just-replaced info series may still show: pick the one that fits the state.
    pick = [r for r in reasons if bool(r[1]) == ended] or reasons or [("", "")]
    energy = slot.get(ENERGY)
    return Obs(
        t,
        start,
        end if ended else None,
        slot.get(METER_START),
        energy if energy is not None and math.isfinite(energy) else None,
        pick[-1][0],
        pick[-1][1] if ended else "",
        live,
        labels,
    )


def chunks(start: float, end: float) -> list[tuple[float, float]]:
    span = STEP * (MAX_POINTS - 1)
    out = []
    t = start
    while t <= end:
        out.append((t, min(end, t + span)))
        t += span + STEP
    return out


def raw_observations(
    client: PromClient,
    pool: ThreadPoolExecutor,
    matchers: Sequence[str],
    on: Sequence[str],
    start: float,
    end: float,
    labels: Labels,
    now: float,
) -> dict[Key, list[Obs]]:
    """The snapshots of every step in [start, end] where a session began or ended, per series key, with the
    crowded steps and the steps that may hide an end asked again as raw scrapes. No step after ``now``: its look
    back would show the current scrapes as if they were older than the live look."""
    first = start - (start % STEP)  # step-aligned: the same steps whichever period asks
    last = end - (end % STEP) + STEP  # one step past the end, so that the last scrapes are in a step
    if last > now:  # steps aligned to now instead, the last one at now
        first, last = now - math.ceil((now - start) / STEP) * STEP, now
    parts_of = chunks(first, last)
    jobs = [(name, c) for name in SESSION_SERIES for c in parts_of]

    def ask(job: tuple[str, tuple[float, float]]) -> tuple[str, list[dict[str, Any]]]:
        name, (a, b) = job
        return name, client.query_range(promql.event_query(name, matchers, on), a, b, STEP)

    parts = list(pool.map(ask, jobs))
    crowded = promql.crowded_query(matchers)
    crowds = list(pool.map(lambda c: client.query_range(crowded, c[0], c[1], STEP), parts_of))
    merged: dict[Key, dict[float, dict[str, Any]]] = {}
    for name, part in parts:
        named = [{**series, "metric": {**series.get("metric", {}), "__name__": name}} for series in part]
        for key, slots in snapshots(named).items():
            per = merged.setdefault(key, {})
            for t, slot in slots.items():
                target = per.setdefault(t, {})
                if INFO in slot:
                    target.setdefault(INFO, []).extend(slot[INFO])
                else:
                    target.update(slot)
    out: dict[Key, list[Obs]] = {}
    for key, slots in merged.items():
        out[key] = [obs_from(t, slot, labels(key)) for t, slot in sorted(slots.items())]
    for part in crowds:
        for series in part:
            key = key_of(series.get("metric", {}))
            for t, _ in series.get("values", []):
                out.setdefault(key, []).extend(raw_window(client, key, float(t), labels(key)))
    for key, observations in out.items():
        observations.extend(hidden_ends(client, key, observations, labels(key)))
    return out


def hidden_ends(client: PromClient, key: Key, observations: Sequence[Obs], labels: Key) -> list[Obs]:
    """Raw samples around the steps where one step may hide an end: the previous snapshot shows a session
    running and this one already a later session (the end, if it was scraped at all, fell in this step)."""
    suspects = [
        b.t
        for a, b in itertools.pairwise(sorted(observations, key=lambda o: o.t))
        if a.start is not None
        and b.start is not None
        and (b.start, b.meter_start_j) != (a.start, a.meter_start_j)
        and a.end is None
    ]
    return [ob for t in suspects for ob in raw_window(client, key, t, labels)]


def raw_window(client: PromClient, key: Key, t: float, labels: Key, seconds: float = 2 * STEP + OVERLAP) -> list[Obs]:
    """Every scrape of one series in the ``seconds`` (two steps and a minute) before ``t``, as snapshots."""
    raw = client.query(promql.raw_window(promql.key_matchers(key), seconds), t)
    slots = next(iter(snapshots(raw).values()), {})
    return [obs_from(slot_t, slot, labels) for slot_t, slot in sorted(slots.items())]
