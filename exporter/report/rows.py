"""The report's rows: sessions and summaries out of a fetched history, grouped and rounded as the README says.

The columns depend only on the view, its options and the label names the server knows for the selected
chargers, never on whether the period has data, so that monthly files line up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from exporter.report import ledger
from exporter.report.identity import NAME
from exporter.report.output import Row
from exporter.report.periods import Period, rfc3339
from exporter.report.queries import History, Part
from exporter.report.series import Key

SESSION_COLUMNS = (
    "start",
    "end",
    "duration_s",
    "energy_kwh",
    "meter_start_kwh",
    "meter_stop_kwh",
    "start_reason",
    "stop_reason",
    "status",
    "flags",
)
SUMMARY_COLUMNS = (
    "energy_kwh",
    "sessions",
    "meter_start_kwh",
    "meter_start_time",
    "meter_end_kwh",
    "meter_end_time",
    "flags",
)
GROUP_COLUMNS = ("energy_kwh", "sessions", "chargers", "flags")
PERIOD_COLUMNS = ("period_start", "period_end")


def _extra(history: History) -> list[str]:
    return [n for n in history.label_names if n != NAME]


def _bounds(period: Period) -> dict[str, str]:
    return {"period_start": rfc3339(period.start, period.zone), "period_end": rfc3339(period.end, period.zone)}


def _money(price: float | None) -> list[str]:
    return ["cost", "currency"] if price is not None else []


def session_rows(history: History, period: Period, price: float | None, currency: str) -> tuple[list[str], list[Row]]:
    extra = _extra(history)
    columns = [NAME, *extra, *PERIOD_COLUMNS, *SESSION_COLUMNS, *_money(price)]
    rows: list[Row] = []
    bounds = _bounds(period)
    heads: dict[Key, Row] = {}  # the label columns of each label set, made once
    for entry in history.chargers:
        for s in ledger.in_period(entry.sessions, period.start, period.end):
            key = s.labels or entry.charger.labels
            head = heads.get(key)
            if head is None:
                labels = dict(key)
                head = heads[key] = {NAME: labels.get(NAME, ""), **{c: labels.get(c, "") for c in extra}, **bounds}
            row: Row = {**head}
            row.update(_session_fields(s, period))
            if price is not None:
                row["cost"], row["currency"] = ledger.cost(s.energy_kwh, price), currency
            rows.append(row)
    rows.sort(key=lambda r: (r[NAME], *(r[c] for c in extra), r["_start"]))
    for row in rows:
        del row["_start"]
    return columns, rows


def _session_fields(s: ledger.Session, period: Period) -> dict[str, Any]:
    return {
        "_start": s.start,
        "start": rfc3339(s.start, period.zone),
        "end": None if s.end is None else rfc3339(s.end, period.zone),
        "duration_s": None if s.duration_s is None else round(s.duration_s),
        "energy_kwh": _kwh(s.energy_kwh),
        "meter_start_kwh": _kwh(s.meter_start_kwh),
        "meter_stop_kwh": _kwh(s.meter_stop_kwh),
        "start_reason": s.start_reason,
        "stop_reason": s.stop_reason,
        "status": s.status,
        "flags": " ".join(s.flags),
    }


def _kwh(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _summaries(history: History) -> list[tuple[int, Part, ledger.Summary]]:
    """Each charger's summary per label set it carried in the period: the meter's rise split where it changed."""
    out = []
    for i, entry in enumerate(history.chargers):
        for part in entry.parts:
            a, b = part.meter_start, part.meter_end
            summary = ledger.summarize(
                entry.sessions,
                part.start,
                part.end,
                None if a is None else a.joules,
                None if b is None else b.joules,
                start_time=None if a is None else a.t,
                end_time=None if b is None else b.t,
            )
            flags = tuple(dict.fromkeys((*summary.flags, *part.flags)))
            out.append((i, part, ledger.Summary(**{**_fields(summary), "flags": flags})))
    return out


def _fields(summary: ledger.Summary) -> dict[str, Any]:
    return {name: getattr(summary, name) for name in ledger.Summary.__dataclass_fields__}


def summary_rows(
    history: History, period: Period, by: str, price: float | None, currency: str
) -> tuple[list[str], list[Row]]:
    summaries = _summaries(history)
    if by == NAME:
        return _per_charger(history, period, summaries, price, currency)
    groups: dict[str, tuple[ledger.Summary, set[int]]] = {}
    for i, part, summary in summaries:
        value = dict(part.labels).get(by, "")
        total, members = groups.get(value, (ledger.Summary(0.0, 0, None, None), set()))
        groups[value] = (ledger.add(total, summary), members | {i})
    columns = [by, *PERIOD_COLUMNS, *GROUP_COLUMNS, *_money(price)]
    rows: list[Row] = []
    for value, (summary, members) in sorted(groups.items()):
        row: Row = {by: value, **_bounds(period), "chargers": len(members), **_energy(summary, price, currency)}
        rows.append(row)
    return columns, rows


def _per_charger(
    history: History,
    period: Period,
    summaries: Sequence[tuple[int, Part, ledger.Summary]],
    price: float | None,
    currency: str,
) -> tuple[list[str], list[Row]]:
    extra = _extra(history)
    columns = [NAME, *extra, *PERIOD_COLUMNS, *SUMMARY_COLUMNS, *_money(price)]
    rows: list[Row] = []
    for _, part, summary in summaries:
        labels = dict(part.labels)
        row: Row = {NAME: labels.get(NAME, ""), **{c: labels.get(c, "") for c in extra}, **_bounds(period)}
        row.update(_energy(summary, price, currency))
        row["meter_start_kwh"], row["meter_end_kwh"] = _kwh(summary.meter_start_kwh), _kwh(summary.meter_end_kwh)
        row["meter_start_time"] = (
            None if summary.meter_start_time is None else rfc3339(summary.meter_start_time, period.zone)
        )
        row["meter_end_time"] = None if summary.meter_end_time is None else rfc3339(summary.meter_end_time, period.zone)
        rows.append(row)
    rows.sort(key=lambda r: (r[NAME], *(r[c] for c in extra), r["meter_start_time"] or ""))
    return columns, rows


def _time(t: float | None, period: Period) -> str | None:
    return None if t is None else rfc3339(t, period.zone)


def _energy(summary: ledger.Summary, price: float | None, currency: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "energy_kwh": round(summary.energy_kwh, 3),
        "sessions": summary.sessions,
        "flags": " ".join(summary.flags),
    }
    if price is not None:
        out["cost"], out["currency"] = ledger.cost(summary.energy_kwh, price), currency
    return out
