"""Each row's cost: the ledger's rows (exporter.report.ledger) priced by exporter.report.pricing, with the meter read
at every price change inside them (exporter.report.pricequeries).

A session's readings are its ``meterStart`` at its start and ``meterStop`` at its end (a running one's live energy
at its last look); a charger's summary readings are the ledger's own (the meter at the period's bounds and the
session readings inside it), so a summary's pieces add up to exactly its ``energy_kwh``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from exporter.report import ledger
from exporter.report.client import PromClient
from exporter.report.periods import Period
from exporter.report.pricequeries import meters_at
from exporter.report.pricing import NO_COST, Cost, Prices, cost_of, meter_lookup
from exporter.report.queries import History
from exporter.report.series import Key


@dataclass(slots=True)
class Costs:
    sessions: dict[tuple[Key, float], Cost] = field(default_factory=dict)
    summary: dict[Key, Cost] = field(default_factory=dict)

    def session(self, key: Key, start: float) -> Cost:
        return self.sessions.get((key, start), NO_COST)

    def of(self, key: Key) -> Cost:
        return self.summary.get(key, NO_COST)


def session_readings(s: ledger.Session) -> list[tuple[float, float]]:
    if s.meter_start_kwh is None or s.energy_kwh is None:
        return []
    end = s.end if s.end is not None else s.last_seen
    return [(s.start, s.meter_start_kwh), (end, s.meter_start_kwh + s.energy_kwh)] if end > s.start else []


def _priced_session(s: ledger.Session) -> bool:
    return s.energy_kwh is not None and not s.flags and s.status in ("ended", "running")


def price_history(
    client: PromClient, history: History, period: Period, prices: Prices, matchers: Sequence[str], lookback: float
) -> Costs:
    """Every session started in the period and every charger's summary, priced."""
    readings: dict[tuple[Key, float], list[tuple[float, float]]] = {}
    summaries: dict[Key, tuple[ledger.Summary, list[tuple[float, float]]]] = {}
    for key, sessions in history.sessions.items():
        for s in ledger.in_period(sessions, period.start, period.end):
            if _priced_session(s):
                readings[(key, s.start)] = session_readings(s)
        summary = ledger.summarize(
            sessions, period.start, period.end, history.meter_start.get(key), history.meter_end.get(key)
        )
        summaries[key] = (summary, ledger.summary_readings(
            sessions, period.start, period.end, history.meter_start.get(key), history.meter_end.get(key)
        ))
    times: set[float] = set()
    for spans in [*readings.values(), *(r for _, r in summaries.values())]:
        if len(spans) >= 2:
            times.update(t for t, _ in prices.changes(spans[0][0], spans[-1][0])[1:])
    meter = meters_at(client, matchers, sorted(times), lookback) if times else {}
    out = Costs()
    for (key, start), points in readings.items():
        out.sessions[(key, start)] = cost_of(points, prices, meter_lookup(meter.get(key, {})))
    for key, (summary, points) in summaries.items():
        known = not summary.flags and summary.meter_start_kwh is not None
        out.summary[key] = cost_of(points, prices, meter_lookup(meter.get(key, {})), known=known)
    return out
