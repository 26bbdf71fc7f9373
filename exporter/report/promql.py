"""The PromQL the report sends, as pure functions of the series, matchers and windows (no I/O): the raw-series
event queries (docs/energy-reports.md, "How it queries"), the ledger rules' selectors, the meter at a bound, the rules'
heartbeat.

Every query here runs unchanged on Prometheus and VictoriaMetrics; tests/test_report_promql.py pins each one.
"""

from __future__ import annotations

from collections.abc import Sequence

from exporter.report.series import END, ENERGY, INFO, METER, METER_START, SESSION_SERIES, START, Key

STEP = 300.0  # one step per 5 min: 105,120 steps a year, ~2 returned per session
OVERLAP = 60.0
WINDOW = f"{int(STEP + OVERLAP)}s"
HEARTBEAT = "pulsatrix:ledger_recording"
RECORDED = {
    f"{START}:changes": START,
    f"{END}:changes": END,
    f"{METER_START}:changes": METER_START,
    f"{ENERGY}:ended_changes": ENERGY,
    f"{INFO}:changes": INFO,
}
# The heartbeat counts as covering a minute when it has a sample in the 150 s before it: the shipped rules evaluate
# every 15 s (at most every 60 s, README), so a gap of more than about 2.5 minutes (a rule file dropped by a
# reload, evaluations failing) is seen, while one late evaluation is not a gap.
COVER_STEP = 60
COVER_WINDOW = 150
COVER_HOUR = 3_600


def selector(name: str, matchers: Sequence[str]) -> str:
    return name + ("{" + ",".join(matchers) + "}" if matchers else "")


def name_selector(names: Sequence[str], matchers: Sequence[str]) -> str:
    return "{" + ",".join([f'__name__=~"{"|".join(names)}"', *matchers]) + "}"


def session_selector(matchers: Sequence[str]) -> str:
    """Every session series of the selected chargers."""
    return name_selector(SESSION_SERIES, matchers)


def recorded_selector(matchers: Sequence[str]) -> str:
    """Every change series the ledger rules record."""
    return name_selector(list(RECORDED), matchers)


def key_matchers(key: Key) -> list[str]:
    """Exact matchers for one series' labels."""
    return [f'{k}="{escape(v)}"' for k, v in key]


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def event_query(name: str, matchers: Sequence[str], on: Sequence[str]) -> str:
    """One series' last sample in each step where a session began or ended (one query per series: the function
    drops the metric name, and a plain selector would lose the last scrapes to staleness markers). A change of
    the meter start is an event too: firmware that reports ``startedTime`` 0 for every session changes nothing
    else when the next session starts."""
    w = WINDOW
    s, e, m = selector(START, matchers), selector(END, matchers), selector(METER_START, matchers)
    last_e, before_e = f"last_over_time({e}[{w}])", f"last_over_time({e}[{w}] offset {w})"
    last_s, before_s = f"last_over_time({s}[{w}])", f"last_over_time({s}[{w}] offset {w})"
    # a start, the start series' first scrapes (after an outage, or where the history begins), an end
    events = (
        f"changes({s}[{w}]) > 0 or changes({m}[{w}]) > 0 or ({last_s} unless {before_s})"
        f" or ({last_e} unless {before_e}) or ({last_e} != {before_e})"
    )
    labels = ", ".join(on)
    # The info labels as the last scrape had them (a plain selector: within a step an earlier session's label set
    # is still in the window); the numbers as last scraped, staleness markers or not.
    value = selector(name, matchers) if name == INFO else f"last_over_time({selector(name, matchers)}[{w}])"
    return f"{value} and on({labels}) ({events})"


def crowded_query(matchers: Sequence[str]) -> str:
    """The steps with two sessions or more: only the later one's snapshot comes back, so they are asked again."""
    s, m, w = selector(START, matchers), selector(METER_START, matchers), WINDOW
    # two changes, or one change after the series' first scrapes (where the history or an outage begins)
    appeared = f"(last_over_time({s}[{w}]) unless last_over_time({s}[{w}] offset {w}))"
    return (
        f"changes({s}[{w}]) > 1 or changes({m}[{w}]) > 1"
        f" or ((changes({s}[{w}]) > 0 or changes({m}[{w}]) > 0) and {appeared})"
    )


def raw_window(matchers: Sequence[str], seconds: float) -> str:
    """Every scrape of the session series in the ``seconds`` before the evaluation time, as raw samples."""
    return f"{session_selector(matchers)}[{int(seconds)}s]"


def meter_samples(matchers: Sequence[str], seconds: float) -> str:
    """The meter's raw samples in the ``seconds`` before the evaluation time (each with its scrape time)."""
    return f"{selector(METER, matchers)}[{max(1, int(seconds))}s]"


def meter_count(matchers: Sequence[str], seconds: float) -> str:
    """How many meter samples lie in each window of ``seconds`` (to find where a history begins or ends)."""
    return f"count_over_time({selector(METER, matchers)}[{max(1, int(seconds))}s])"


def heartbeat_minute() -> str:
    """Per minute (a range query at a 60 s step), whether the ledger rules' heartbeat has a sample in the 150 s
    before it: 1 covered, 0 a gap (an HA pair's replicas count together: one of them recording is enough)."""
    return f"(sum(count_over_time({HEARTBEAT}[{COVER_WINDOW}s])) or vector(0)) > bool 0"


def heartbeat_covered() -> str:
    """Per hour (a range query at a one-hour step), whether every minute of it was covered: an hour of minutes is
    a subquery both Prometheus and VictoriaMetrics answer, and a year is 8,760 points."""
    return f"min_over_time(({heartbeat_minute()})[{COVER_HOUR}s:{COVER_STEP}s])"


def heartbeat_count(span: float) -> str:
    """The rules' heartbeat samples in the ``span`` before the evaluation time (none: the rules never ran)."""
    return f"sum(count_over_time({HEARTBEAT}[{max(1, int(span))}s]))"


def session_count(matchers: Sequence[str], seconds: float) -> str:
    """Whether any selected charger's session series was scraped in the ``seconds`` before the evaluation time."""
    return f"count(count_over_time({selector(START, matchers)}[{max(1, int(seconds))}s]))"


def recorded_before(matchers: Sequence[str], seconds: float) -> str:
    """Each recorded series' last change before the evaluation time (the state a period begins with)."""
    return f"last_over_time({recorded_selector(matchers)}[{int(seconds)}s])"


def recorded_range(matchers: Sequence[str], seconds: float) -> str:
    return f"{recorded_selector(matchers)}[{int(seconds)}s]"
