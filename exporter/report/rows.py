"""The report's rows: sessions and summaries out of a fetched history, grouped and rounded as the README says.

The columns depend only on the view, its options and the label names the server knows for the selected
chargers, never on whether the period has data, so that monthly files line up.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from exporter.report import ledger
from exporter.report.costs import Costs
from exporter.report.identity import NAME
from exporter.report.output import Row
from exporter.report.periods import Period, rfc3339
from exporter.report.pricing import Cost, total
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
COST_COLUMNS = ("cost", "currency", "avg_price")


def label_columns(history: History) -> list[str]:
    """The chargers' label columns besides ``charger`` (such as ``site``)."""
    return [n for n in history.label_names if n != NAME]


_extra = label_columns


def _bounds(period: Period) -> dict[str, str]:
    return {"period_start": rfc3339(period.start, period.zone), "period_end": rfc3339(period.end, period.zone)}


def _money(costs: Costs | None) -> list[str]:
    return list(COST_COLUMNS) if costs is not None else []


def _cost_fields(row: Row, cost: Cost, currency: str | None) -> None:
    """cost (to the cent), currency, avg_price (cost ÷ kWh); a cost that cannot be told adds its flag."""
    row["cost"], row["currency"], row["avg_price"] = cost.cost, currency, cost.avg_price
    if cost.flags:
        row["flags"] = " ".join(dict.fromkeys([*str(row.get("flags") or "").split(), *cost.flags]))


def session_rows(
    history: History, period: Period, costs: Costs | None, currency: str | None
) -> tuple[list[str], list[Row]]:
    extra = _extra(history)
    columns = [NAME, *extra, *PERIOD_COLUMNS, *SESSION_COLUMNS, *_money(costs)]
    rows: list[Row] = []
    bounds = _bounds(period)
    heads: dict[Key, Row] = {}  # the label columns of each label set, made once
    for i, entry in enumerate(history.chargers):
        for s in ledger.in_period(entry.sessions, period.start, period.end):
            key = s.labels or entry.charger.labels
            head = heads.get(key)
            if head is None:
                labels = dict(key)
                head = heads[key] = {NAME: labels.get(NAME, ""), **{c: labels.get(c, "") for c in extra}, **bounds}
            row: Row = {**head}
            row.update(_session_fields(s, period))
            if costs is not None:
                _cost_fields(row, costs.session(i, s.start), currency)
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


def _summaries(history: History) -> list[tuple[tuple[int, int], Part, ledger.Summary]]:
    """Each charger's summary per label set it carried in the period: the meter's rise split where it changed."""
    out = []
    for i, entry in enumerate(history.chargers):
        for j, part in enumerate(entry.parts):
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
            out.append(((i, j), part, ledger.Summary(**{**_fields(summary), "flags": flags})))
    return out


def _fields(summary: ledger.Summary) -> dict[str, Any]:
    return {name: getattr(summary, name) for name in ledger.Summary.__dataclass_fields__}


def summary_rows(
    history: History, period: Period, by: str, costs: Costs | None, currency: str | None
) -> tuple[list[str], list[Row]]:
    summaries = _summaries(history)
    if by == NAME:
        return _per_charger(history, period, summaries, costs, currency)
    groups: dict[str, tuple[ledger.Summary, set[int]]] = {}
    priced: dict[str, list[Cost]] = {}
    for (i, j), part, summary in summaries:
        value = dict(part.labels).get(by, "")
        group, members = groups.get(value, (ledger.Summary(0.0, 0, None, None), set()))
        groups[value] = (ledger.add(group, summary), members | {i})
        if costs is not None:
            priced.setdefault(value, []).append(costs.part(i, j))
    columns = [by, *PERIOD_COLUMNS, *GROUP_COLUMNS, *_money(costs)]
    rows: list[Row] = []
    for value, (summary, members) in sorted(groups.items()):
        row: Row = {by: value, **_bounds(period), "chargers": len(members), **_energy(summary)}
        if costs is not None:  # rounded once, as the group's kWh is (README, --by)
            _cost_fields(row, _group_cost(costs, priced[value], summary), currency)
        rows.append(row)
    return columns, rows


def _group_cost(costs: Costs, members: Sequence[Cost], summary: ledger.Summary) -> Cost:
    if costs.price is None or any(c.cost is None for c in members):
        return total(members, summary.energy_kwh)
    cost = ledger.cost(summary.energy_kwh, costs.price)
    kwh = Decimal(repr(round(summary.energy_kwh, 3)))
    avg = None if cost is None or kwh <= 0 else (cost / kwh).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
    return Cost(cost, avg)


def _per_charger(
    history: History,
    period: Period,
    summaries: Sequence[tuple[tuple[int, int], Part, ledger.Summary]],
    costs: Costs | None,
    currency: str | None,
) -> tuple[list[str], list[Row]]:
    extra = _extra(history)
    columns = [NAME, *extra, *PERIOD_COLUMNS, *SUMMARY_COLUMNS, *_money(costs)]
    rows: list[Row] = []
    for (i, j), part, summary in summaries:
        labels = dict(part.labels)
        row: Row = {NAME: labels.get(NAME, ""), **{c: labels.get(c, "") for c in extra}, **_bounds(period)}
        row.update(_energy(summary))
        if costs is not None:
            _cost_fields(row, costs.part(i, j), currency)
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


def _energy(summary: ledger.Summary) -> dict[str, Any]:
    return {
        "energy_kwh": round(summary.energy_kwh, 3),
        "sessions": summary.sessions,
        "flags": " ".join(summary.flags),
    }
