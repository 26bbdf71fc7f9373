"""What the report asks the server, in order: which chargers there are, which source covers the period, their
looks at the session series (the raw series, exporter.report.raw, or the ledger rules' changes,
exporter.report.recorded), sessions followed past the period to their end, the meter at the bounds and where a
charger's labels changed (exporter.report.bounds). The PromQL itself is built in exporter.report.promql; who is
which charger is decided in exporter.report.identity; what the looks mean in exporter.report.ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from exporter.report import bounds, identity, promql, raw, recorded
from exporter.report.bounds import Reading
from exporter.report.client import PromClient
from exporter.report.identity import Charger
from exporter.report.ledger import Obs, Session, reconstruct, session_id
from exporter.report.periods import Period, rfc3339
from exporter.report.series import INFO_LABELS, METER, PARALLEL, START, Key, key_of

DAY = 86_400.0
FOLLOW = DAY  # the first look past the period's end; doubled until every session started in it has ended
HISTORY = 3_650 * DAY  # how far back the label names of the chargers are looked for
BEFORE = 31 * DAY  # how far before a period the oldest-data check looks
LOOK_WINDOW = 2 * promql.STEP + promql.OVERLAP  # a look is at most this long after the scrape it shows


@dataclass(frozen=True, slots=True)
class Part:
    """A stretch of the period in which a charger carried one label set, with the meter at its two ends."""

    labels: Key
    start: float
    end: float
    meter_start: Reading | None
    meter_end: Reading | None
    flags: tuple[str, ...] = ()


@dataclass(slots=True)
class ChargerHistory:
    charger: Charger
    sessions: list[Session]
    parts: list[Part] = field(default_factory=list)


@dataclass(slots=True)
class History:
    chargers: list[ChargerHistory] = field(default_factory=list)
    label_names: list[str] = field(default_factory=list)  # the chargers' own label names: the output's columns
    source: str = "raw"  # "rules" when read from the ledger's recording rules
    notes: list[str] = field(default_factory=list)  # for stderr
    refined: int = 0  # windows asked again as raw samples


@dataclass(slots=True)
class _Run:
    client: PromClient
    period: Period
    matchers: Sequence[str]
    lookback: float
    now: float
    drop: frozenset[str]
    on: list[str]
    rules: bool
    present: set[Key] = field(default_factory=set)

    def labels(self, key: Key) -> Key:
        return identity.charger_labels(key, self.drop)


def label_names(client: PromClient, matchers: Sequence[str], start: float, end: float) -> list[str]:
    names: set[str] = set()
    for metric in series_of(client, matchers, start, end):
        names.update(k for k in metric if k != "__name__")
    return sorted(names)


def series_of(client: PromClient, matchers: Sequence[str], start: float, end: float) -> list[dict[str, str]]:
    """The meter's and the session start's series the server has for the chargers in [start, end] (by the
    index: Prometheus answers per block, VictoriaMetrics per day)."""
    selectors = (promql.selector(METER, matchers), promql.selector(START, matchers))
    return [metric for selector in selectors for metric in client.series(selector, start, end)]


def fetch_history(
    client: PromClient,
    period: Period,
    matchers: Sequence[str],
    *,
    lookback: float,
    now: float,
    source: str = "auto",
    replica_labels: Sequence[str] = (),
) -> History:
    history = History()
    drop = identity.dropped(replica_labels)
    known = label_names(client, matchers, period.start - HISTORY, now)
    history.label_names = [n for n in known if n not in drop and n not in INFO_LABELS]
    first_end = min(now, period.end + FOLLOW)
    present = series_of(client, matchers, period.start - lookback, first_end)
    on = sorted({k for metric in present for k in metric if k != "__name__"})
    if not on:
        return history
    rules = source == "rules"
    if source != "raw":
        coverage = recorded.coverage(client, matchers, period.start - DAY, first_end)
        whole = coverage == "all"
        if coverage == "gaps" or (rules and not whole):
            history.notes.append(
                f"the ledger rules' heartbeat ({promql.HEARTBEAT}) has gaps between "
                f"{rfc3339(period.start - DAY, period.zone)} and {rfc3339(first_end, period.zone)}"
                + (": their changes may miss sessions" if rules else ": reading the raw series")
            )
        rules = rules or whole
    history.source = "rules" if rules else "raw"
    run = _Run(client, period, matchers, lookback, now, drop, on, rules)
    # a charger whose series the server has but whose every value was unusable (NaN): a row that says so
    run.present = {run.labels(key_of(metric)) for metric in present}
    per_series = _observe(run, matchers, period.start, first_end)
    for key, ob in raw.latest(client.query(promql.raw_window(matchers, lookback), now), run.labels).items():
        per_series.setdefault(key, []).append(ob)
    _follow(run, per_series, first_end)
    _build(run, history, per_series)
    return history


def _observe(
    run: _Run, matchers: Sequence[str], start: float, end: float, *, initial: bool = True
) -> dict[Key, list[Obs]]:
    if run.rules:
        return recorded.recorded_observations(run.client, matchers, start, end, run.labels, initial=initial)
    with ThreadPoolExecutor(PARALLEL) as pool:
        return raw.raw_observations(run.client, pool, matchers, run.on, start, end, run.labels, run.now)


def _follow(run: _Run, per_series: dict[Key, list[Obs]], looked: float) -> None:
    """Sessions started in the period and not seen ending are followed, in windows of doubling length, until
    they end, another session begins, or now."""
    width = FOLLOW
    while looked < run.now:
        open_names = set()
        per_labels: dict[Key, list[Obs]] = {}
        for key, obs in per_series.items():
            per_labels.setdefault(run.labels(key), []).extend(o for o in obs if o.t <= looked and not o.live)
        for labels, obs in per_labels.items():
            # the last look of every copy and label set of a charger: a label set that stopped being scraped
            # while its session ran is not open when another shows the session's end
            if obs:
                last = max(obs, key=lambda o: (o.t, o.end is not None))
                ended = any(o.end is not None and o.start == last.start for o in obs)
                if not ended and last.start is not None and run.period.start <= last.start < run.period.end:
                    open_names.add(identity.name_of(labels))
        if not open_names:
            return
        names = "|".join(sorted(_regex(n) for n in open_names))
        until = min(run.now, looked + 2 * width)
        more = _observe(
            run, [*run.matchers, f'{identity.NAME}=~"{promql.escape(names)}"'], looked, until, initial=False
        )
        for key, obs in more.items():
            per_series.setdefault(key, []).extend(obs)
        looked, width = until, 2 * width


def _regex(text: str) -> str:
    return "".join("\\" + c if c in r"\.^$|?*+()[]{}" else c for c in text)


def _build(run: _Run, history: History, per_series: dict[Key, list[Obs]]) -> None:
    period = run.period
    per_labels: dict[Key, list[Obs]] = {}
    series_of: dict[Key, list[Key]] = {}
    for key, obs in per_series.items():
        labels = run.labels(key)
        per_labels.setdefault(labels, []).extend(obs)
        series_of.setdefault(labels, []).append(key)
    end_at = min(period.end, run.now)
    at_start = bounds.latest(bounds.samples(run.client, run.matchers, period.start, run.lookback, run.labels))
    at_end = bounds.latest(bounds.samples(run.client, run.matchers, end_at, run.lookback, run.labels))
    # a charger the server has series of but not one usable value (NaN everywhere): still a row, flagged
    known = {identity.name_of(labels) for labels in (*per_labels, *at_start, *at_end)}
    unseen = [labels for labels in run.present if identity.name_of(labels) not in known]
    for charger in identity.group(per_labels, also=[*at_start, *at_end, *unseen]):
        obs = [ob for labels in charger.label_sets for ob in per_labels.get(labels, [])]
        kept = any(s in at_start or s in at_end or s in unseen for s in charger.label_sets)
        if not kept and not any(period.start < ob.t <= end_at for ob in obs):
            continue  # a label set the rules last recorded long ago: nothing of it in this period
        sessions = reconstruct(obs, horizon=run.now, fresh=run.lookback)
        clocked = [s for s in sessions if "device_clock" in s.flags]
        if clocked:
            keys = [k for labels in charger.label_sets for k in series_of.get(labels, [])]
            for s in clocked:
                obs += _scrapes_from_start(run, keys, s.start)
                if s.end is not None:
                    obs += [ob for k in keys for ob in raw.raw_window(run.client, k, s.end, run.labels(k))]
            history.refined += 1
            sessions = reconstruct(obs, horizon=run.now, fresh=run.lookback)
        entry = ChargerHistory(charger, sessions)
        entry.parts = _parts(run, charger, obs, at_start, at_end)
        history.chargers.append(entry)
    if history.chargers:
        _oldest(run, history)


def _scrapes_from_start(run: _Run, keys: Sequence[Key], look: float) -> list[Obs]:
    """The raw scrapes back from a session's first look to the one before it began (windows doubling back, up to
    a week): a session with implausible device times is placed at the first scrape that showed it, which a
    period beginning in the middle of the session has not looked at."""
    seconds = LOOK_WINDOW
    while True:
        found = [ob for k in keys for ob in raw.raw_window(run.client, k, look, run.labels(k), seconds)]
        found.sort(key=lambda o: o.t)
        sid = next((session_id(o) for o in reversed(found) if o.t <= look and session_id(o) is not None), None)
        if not found or session_id(found[0]) != sid or seconds >= 7 * DAY:
            return found
        seconds *= 2


def _pick(readings: dict[Key, Reading], charger: Charger) -> Reading | None:
    """The charger's latest reading among its label sets' (an HA pair's copies are one label set already)."""
    mine = [readings[s] for s in charger.label_sets if s in readings]
    return max(mine, key=lambda r: r.t) if mine else None


def _parts(
    run: _Run, charger: Charger, obs: list[Obs], at_start: dict[Key, Reading], at_end: dict[Key, Reading]
) -> list[Part]:
    period = run.period
    is_open = run.now < period.end
    end_at = min(period.end, run.now)
    wanted = set(charger.label_sets)
    name = [f'{identity.NAME}="{promql.escape(identity.name_of(charger.labels))}"']
    matchers = [*run.matchers, *name] if identity.name_of(charger.labels) else list(run.matchers)
    flags_start: tuple[str, ...] = ()
    first = _pick(at_start, charger)
    if first is None:
        flags_start = ("no_data_at_start",)
        first = bounds.edge(run.client, matchers, period.start, end_at, wanted, run.labels, first=True)
    last = _pick(at_end, charger)
    flags_end: tuple[str, ...] = ("period_open",) if is_open else ()
    if last is None:
        if not is_open:
            flags_end = ("no_data_at_end",)
        last = bounds.edge(run.client, matchers, period.start, end_at, wanted, run.labels, first=False)
    labels_now = first.labels if first is not None else (obs[0].labels if obs else charger.labels)
    cuts = identity.segments([o for o in obs if o.t < end_at], period.start, labels_now) if len(wanted) > 1 else []
    changes: list[tuple[float, Key, Reading | None]] = []
    for t, labels in cuts[1:]:
        near = bounds.samples(run.client, matchers, t, LOOK_WINDOW, run.labels)
        new = [r for r in near if r.labels == labels]
        at = new[0].t if new else t
        before = [r for r in near if r.labels in wanted and r.t < at]
        changes.append((at, labels, before[-1] if before else (new[0] if new else None)))
    parts: list[Part] = []
    a, labels_a, reading_a, flags_a = period.start, labels_now, first, flags_start
    for at, labels, reading in changes:
        parts.append(Part(labels_a, a, at, reading_a, reading, flags_a))
        a, labels_a, reading_a, flags_a = at, labels, reading, ()
    parts.append(Part(labels_a, a, period.end, reading_a, last, (*flags_a, *flags_end)))
    return parts


def _oldest(run: _Run, history: History) -> None:
    """Say so when the period begins before the oldest data the server holds for the selected chargers."""
    period = run.period
    if not any("no_data_at_start" in c.parts[0].flags for c in history.chargers):
        return
    # A month back, not years: VictoriaMetrics answers a longer range from its global index, whatever the times.
    if run.client.series(promql.selector(METER, run.matchers), period.start - BEFORE, period.start - 1):
        return
    firsts = [p.meter_start.t for c in history.chargers for p in c.parts[:1] if p.meter_start is not None]
    since = f" (the oldest is from {rfc3339(min(firsts), period.zone)})" if firsts else ""
    history.notes.append(
        f"the period begins before the oldest data the server holds for these chargers{since}: the figures "
        "cover only what it holds (flag no_data_at_start); is its retention shorter than the period?"
    )
