"""What the report asks the server: the scrapes where a session started or ended, never every sample.

A year at 15 s is 2.1 million samples per series and Prometheus refuses a ``query_range`` of more than 11,000
points, so the report never asks for the series as they are. It asks, in ranges of at most 11,000 steps of
``STEP`` (5 min: 38 days), only for the steps at which a session began or ended::

    {__name__=~"<session series>"} and on(<charger labels>) (changes(start[6m]) > 0
                                      or (end unless end offset 5m) or (end != end offset 5m))

The left side is a plain selector, so each returned step is the snapshot of the last scrape before it (the
session's start, end, meter start, energy and reasons, all from that scrape): exactly what the reconstruction in
exporter.report.ledger reads. About two steps per session come back instead of 105,000 steps per series and year.
The windows overlap by a minute so that a change between the last scrape of one step and the first of the next is
counted; ``end unless end offset`` catches the end that appears after a session longer than a step (the end
series is absent while a session runs), ``end != end offset`` one shorter than a step.

When the ledger's recording rules (deploy/prometheus/ledger.yml) were already running at the period's start,
exporter.report.recorded reads their sparse change series instead: the same snapshots for a fraction of the work.

Two events in one step (a session ending and the next starting within 5 min, or a session shorter than 5 min)
would leave only the later snapshot; such a step is asked for again as raw samples (``[6m] @ t``) for that one
charger, which is cheap because it is rare. Sessions started in the period are followed up to a day past its end
(their end), and the latest snapshot (now, or a day past the end) tells running from incomplete.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from exporter.report import recorded
from exporter.report.client import PromClient
from exporter.report.ledger import Obs, Session, reconstruct
from exporter.report.periods import Period
from exporter.report.series import END, ENERGY, INFO, METER, METER_START, PARALLEL, SESSION_SERIES, START, Key, key_of

STEP = 300.0  # one step per 5 min: 105,120 steps a year, ~2 returned per session
OVERLAP = 60.0
MAX_POINTS = 11_000  # Prometheus' limit per series and query_range
FOLLOW = 86_400.0  # how far past the period a session started in it is followed to its end


@dataclass(slots=True)
class History:
    sessions: dict[Key, list[Session]] = field(default_factory=dict)
    meter_start: dict[Key, float | None] = field(default_factory=dict)
    meter_end: dict[Key, float | None] = field(default_factory=dict)
    refined: int = 0  # steps asked again as raw samples
    source: str = "raw"  # "rules" when read from the ledger's recording rules


def _selector(name: str, matchers: Sequence[str]) -> str:
    return name + ("{" + ",".join(matchers) + "}" if matchers else "")


def _name_selector(matchers: Sequence[str]) -> str:
    return "{" + ",".join([f'__name__=~"{"|".join(SESSION_SERIES)}"', *matchers]) + "}"


def event_query(name: str, matchers: Sequence[str], on: Sequence[str]) -> str:
    """One series' last sample in each step where a session began or ended (one query per series: the function
    drops the metric name, and a plain selector would lose the last scrapes to staleness markers)."""
    w = f"{int(STEP + OVERLAP)}s"
    s, e = _selector(START, matchers), _selector(END, matchers)
    last_e, before_e = f"last_over_time({e}[{w}])", f"last_over_time({e}[{w}] offset {w})"
    last_s, before_s = f"last_over_time({s}[{w}])", f"last_over_time({s}[{w}] offset {w})"
    # a start, the start series' first scrapes (after an outage, or where the history begins), an end
    events = (
        f"changes({s}[{w}]) > 0 or ({last_s} unless {before_s}) or ({last_e} unless {before_e})"
        f" or ({last_e} != {before_e})"
    )
    labels = ", ".join(on)
    # The info labels as the last scrape had them (a plain selector: within a step an earlier session's label set
    # is still in the window); the numbers as last scraped, staleness markers or not.
    value = _selector(name, matchers) if name == INFO else f"last_over_time({_selector(name, matchers)}[{w}])"
    return f"{value} and on({labels}) ({events})"


def crowded_query(matchers: Sequence[str]) -> str:
    """The steps with two sessions or more: only the later one's snapshot comes back, so they are asked again."""
    s, w = _selector(START, matchers), f"{int(STEP + OVERLAP)}s"
    # two changes, or one change after the series' first scrapes (where the history or an outage begins)
    appeared = f"(last_over_time({s}[{w}]) unless last_over_time({s}[{w}] offset {w}))"
    return f"changes({s}[{w}]) > 1 or (changes({s}[{w}]) > 0 and {appeared})"


def snapshots(result: Iterable[dict[str, Any]]) -> dict[Key, dict[float, dict[str, Any]]]:
    """Samples grouped per charger and time: {key: {t: {metric name: value or info labels}}}."""
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


def obs_from(t: float, slot: dict[str, Any], *, live: bool = False) -> Obs:
    start, end = slot.get(START), slot.get(END)
    reasons: list[tuple[str, str]] = slot.get(INFO, [])
    ended = end is not None and start is not None and end >= start
    # Within the lookback a just-replaced info series may still show: pick the one that fits the state.
    pick = [r for r in reasons if bool(r[1]) == ended] or reasons or [("", "")]
    return Obs(
        t,
        start,
        end if ended else None,
        slot.get(METER_START),
        _finite(slot.get(ENERGY)),
        pick[-1][0],
        pick[-1][1] if ended else "",
        live,
    )


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def _chunks(start: float, end: float) -> list[tuple[float, float]]:
    span = STEP * (MAX_POINTS - 1)
    out = []
    t = start
    while t <= end:
        out.append((t, min(end, t + span)))
        t += span + STEP
    return out


def identity_labels(client: PromClient, matchers: Sequence[str], start: float, end: float) -> list[str]:
    names: set[str] = set()
    for metric in client.series(_selector(START, matchers), start, end):
        names.update(k for k in metric if k != "__name__")
    return sorted(names)


def fetch_history(
    client: PromClient, period: Period, matchers: Sequence[str], *, lookback: float, now: float, source: str = "auto"
) -> History:
    horizon = min(now, period.end + FOLLOW)
    history = History()
    on = identity_labels(client, matchers, period.start - lookback, horizon)
    if not on:
        return history

    with ThreadPoolExecutor(PARALLEL) as pool:
        latest_part = pool.submit(client.query, _name_selector(matchers), horizon)
        bounds_part = pool.map(lambda t: meters(client, matchers, t, lookback), (period.start, period.end))
        if source == "rules" or (source == "auto" and recorded.recording_at(client, period.start)):
            history.source = "rules"
            per_key = recorded.recorded_observations(client, matchers, period.start, horizon)
        else:
            per_key = _raw_observations(client, pool, matchers, on, period.start, horizon)
        latest, bounds = latest_part.result(), list(bounds_part)
    for key, slots in snapshots(latest).items():
        # the server's own answer for "now": a charger it still considers scraped (not stale)
        per_key.setdefault(key, []).extend(obs_from(t, slot, live=True) for t, slot in slots.items())
    for key, observations in per_key.items():
        if history.source == "raw":
            extra = refine(client, key, observations)
            history.refined += len(extra) and 1
            observations.extend(extra)
        history.sessions[key] = reconstruct(observations, horizon=horizon, fresh=lookback)
        history.meter_start[key] = bounds[0].get(key)
        history.meter_end[key] = bounds[1].get(key)
    return history


def _raw_observations(
    client: PromClient, pool: ThreadPoolExecutor, matchers: Sequence[str], on: Sequence[str], start: float, end: float
) -> dict[Key, list[Obs]]:
    first = start - (start % STEP)  # step-aligned: the same steps whichever period asks
    last = end - (end % STEP) + STEP  # one step past the end, so that the last scrapes are in a step
    chunks = _chunks(first, last)
    jobs = [(name, c) for name in SESSION_SERIES for c in chunks]
    def ask(job: tuple[str, tuple[float, float]]) -> tuple[str, list[dict[str, Any]]]:
        name, (a, b) = job
        return name, client.query_range(event_query(name, matchers, on), a, b, STEP)

    parts = list(pool.map(ask, jobs))
    crowded = crowded_query(matchers)
    crowds = list(pool.map(lambda c: client.query_range(crowded, c[0], c[1], STEP), chunks))
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
    out: dict[Key, list[Obs]] = {
        key: [obs_from(t, slot) for t, slot in sorted(slots.items())] for key, slots in merged.items()
    }
    for part in crowds:
        for series in part:
            key = key_of(series.get("metric", {}))
            for t, _ in series.get("values", []):
                out.setdefault(key, []).extend(_raw_window(client, key, float(t)))
    return out


def meters(client: PromClient, matchers: Sequence[str], at: float, lookback: float) -> dict[Key, float | None]:
    """Each charger's meter at ``at`` (the last scrape before it; a charger down around it is looked for up to
    31 days back, so a month's first reading is not lost to an outage)."""
    out: dict[Key, float | None] = {}
    for window in (lookback, 31 * 86_400.0):
        for series in client.query(f"last_over_time({_selector(METER, matchers)}[{int(window)}s])", at):
            out.setdefault(key_of(series.get("metric", {})), float(series["value"][1]))
        if out:
            break
    return out


def refine(client: PromClient, key: Key, observations: Sequence[Obs]) -> list[Obs]:
    """Raw samples around the steps where one step may hide an end: the previous snapshot shows a session
    running and this one already a later session (the end, if it was scraped at all, fell in this step)."""
    suspects = [
        b.t
        for a, b in itertools.pairwise(observations)
        if a.start is not None and b.start is not None and b.start > a.start and a.end is None
    ]
    if not suspects:
        return []
    return [ob for t in suspects for ob in _raw_window(client, key, t)]


def _raw_window(client: PromClient, key: Key, t: float) -> list[Obs]:
    """Every scrape of one charger in the two steps before ``t``, as snapshots."""
    matchers = [f'{k}="{_escape(v)}"' for k, v in key]
    raw = client.query(f"{_name_selector(matchers)}[{int(2 * STEP + OVERLAP)}s]", t)
    slots = next(iter(snapshots(raw).values()), {})
    return [obs_from(slot_t, slot) for slot_t, slot in sorted(slots.items())]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
