"""Reading the ledger's recording rules (deploy/prometheus/ledger.yml) instead of the raw series.

The rules record each session series only when it changed, so a year of 200 chargers is about two million
samples rather than two and a half billion: the report asks for them as they are (range vectors of at most
``CHUNK``), carries each series' last value forward, and so rebuilds the snapshot of every scrape at which anything
changed, which is what exporter.report.ledger reads. The state before the first chunk comes from the last change
before it, however long ago (the recorded series are sparse, so a long look back is cheap).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from exporter.report import promql
from exporter.report.client import PromClient
from exporter.report.ledger import Obs
from exporter.report.series import END, ENERGY, INFO, METER_START, PARALLEL, START, Key, key_of

CHUNK = 7 * 86_400.0  # about 300,000 samples for 200 chargers: a response of some 10 MB
BEFORE = 400 * 86_400.0  # how far back the state at the start is looked for


def coverage(client: PromClient, matchers: Sequence[str], start: float, end: float) -> str:
    """How the rules' heartbeat covered [start, end] where the chargers were scraped: "all", "gaps" (a minute
    without it between two with it, or the chargers scraped before it began or after it stopped) or "none" (the
    rules never ran). Before the first and after the last heartbeat only the raw series say whether it matters:
    a history that begins, or a server that stopped, is no gap. Whole hours are asked as one point each, the
    hour before the first covered one and the minutes after the last whole hour minute by minute."""
    if not client.query(promql.heartbeat_count(end - start), end):
        return "none"
    hour, minute = promql.COVER_HOUR, promql.COVER_STEP
    # (from, to, covered) windows
    # a week of hours per query: VictoriaMetrics evaluates the subquery's minutes for the whole range at once and
    # refuses more than some 30,000 points per series
    windows = _windows(client, promql.heartbeat_covered(), start + hour, end, hour, points=168)
    tail = windows[-1][1] if windows else start
    windows += _windows(client, promql.heartbeat_minute(), tail + minute, end, minute)
    ok = [w for w in windows if w[2]]
    if ok and ok[0][0] > start:  # the hour before the first covered one, minute by minute
        windows += _windows(client, promql.heartbeat_minute(), ok[0][0] - hour + minute, ok[0][0], minute)
        ok = sorted(w for w in windows if w[2])
    if not ok:
        return "gaps"
    first, last = ok[0][0], max(w[1] for w in ok)
    if any(not covered and first <= a and b <= last for a, b, covered in windows):
        return "gaps"
    for a, b in ((start, first), (last, end)):  # before the rules began, after they stopped
        if b - a > minute and client.query(promql.session_count(matchers, b - a), b):
            return "gaps"
    return "all"


def _windows(
    client: PromClient, expr: str, first: float, last: float, step: float, points: int = 10_999
) -> list[tuple[float, float, bool]]:
    out: list[tuple[float, float, bool]] = []
    t = first
    while t <= last:  # pieces of at most 11,000 steps (Prometheus' limit per query_range)
        b = min(last, t + (points - 1) * step)
        for series in client.query_range(expr, t, b, step):
            out += [(float(at) - step, float(at), float(v) >= 1) for at, v in series.get("values", [])]
        t = b + step
    return sorted(out)


def recorded_observations(
    client: PromClient,
    matchers: Sequence[str],
    start: float,
    end: float,
    labels: Callable[[Key], Key],
    *,
    initial: bool = True,
) -> dict[Key, list[Obs]]:
    """Snapshots at every recorded change in (start, end] per series (each replica's copy of each label set),
    every series at its value carried forward; ``labels`` gives the charger's labels of a series' key. The state
    at ``start`` is a snapshot too where ``initial``; where not (a window that follows sessions past a period),
    it only seeds the values carried forward, so that a label set last recorded long ago does not look current."""
    bounds = []
    t = start
    while t < end:
        bounds.append((t, min(end, t + CHUNK)))
        t += CHUNK
    with ThreadPoolExecutor(PARALLEL) as pool:
        before = pool.submit(client.query, promql.recorded_before(matchers, BEFORE), start)
        parts = list(pool.map(lambda b: client.query(promql.recorded_range(matchers, b[1] - b[0]), b[1]), bounds))
    # per series: (t, series, value or info reasons), in time order
    events: dict[Key, list[tuple[float, str, Any]]] = {}
    for series in before.result():
        _add(events, series, [(start, series["value"][1])])
    for part in parts:
        for series in part:
            _add(events, series, series.get("values", []))
    out = {key: _carry_forward(changes, labels(key)) for key, changes in events.items()}
    if not initial:
        out = {key: [ob for ob in obs if ob.t > start] for key, obs in out.items()}
    return out


def _carry_forward(changes: list[tuple[float, str, Any]], labels: Key) -> list[Obs]:
    """One snapshot per change time, every series at its last recorded value (the hot loop of a year's report:
    700,000 snapshots for 200 chargers, so it builds them directly). A new session starts without energy: the
    rules record an ended session's energy only when the exporter has one (not across a meter swap), so the
    previous session's must not be carried into it; nor its end."""
    changes.sort(key=lambda c: c[0])
    start = end = meter = energy = None
    start_reason = stop_reason = ""
    out: list[Obs] = []
    n = len(changes)
    i = 0
    while i < n:
        t = changes[i][0]
        new_energy = new_end = None
        began = False
        while i < n and changes[i][0] == t:
            _, name, value = changes[i]
            if name == START:
                began, start = began or value != start, value
            elif name == END:
                new_end = value
            elif name == METER_START:
                began, meter = began or value != meter, value
            elif name == ENERGY:
                new_energy = value
            else:
                start_reason, stop_reason = value
            i += 1
        if new_energy is not None:
            energy = new_energy
        elif began:
            energy = None
        if new_end is not None:
            end = new_end
        elif began:
            end = None  # the end series is absent while a session runs (firmware with startedTime 0 needs this)
        ended = end is not None and start is not None and end >= start
        out.append(
            Obs(
                t,
                start,
                end if ended else None,
                meter,
                energy,
                start_reason,
                stop_reason if ended else "",
                False,
                labels,
            )
        )
    return out


def _add(events: dict[Key, list[tuple[float, str, Any]]], series: dict[str, Any], points: list[Any]) -> None:
    metric = series.get("metric", {})
    name = promql.RECORDED.get(metric.get("__name__", ""))
    if name is None:
        return
    key = key_of(metric)
    reasons = (metric.get("start_reason", ""), metric.get("stop_reason", ""))
    target = events.setdefault(key, [])
    for t, v in points:
        value = float(v)
        if not math.isfinite(value):  # a staleness marker: VictoriaMetrics returns them in raw samples
            continue
        target.append((float(t), name, reasons if name == INFO else value))
