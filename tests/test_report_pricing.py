"""Energy split at price changes by the meter's last scrape at or before each change, priced, to the cent."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from exporter.report.pricequeries import PriceSeries
from exporter.report.pricing import UNPRICED, Constant, Cost, MeterAt, Steps, cost_of, money, precomputed, total
from exporter.report.tariff import TariffSchedule, parse_tariff

BERLIN = ZoneInfo("Europe/Berlin")
NIGHT = TariffSchedule(
    parse_tariff(
        """
currency: EUR
tariffs:
  - from: "2026-01-01"
    price: 0.32
    windows: [{name: night, start: "22:00", end: "06:00", price: 0.24}]
  - from: "2026-07-01"
    price: 0.34
"""
    ),
    BERLIN,
)


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN).timestamp()


def scrapes(points: Sequence[tuple[str, float]]) -> dict[float, float]:
    return {at(t): kwh for t, kwh in points}


def last_scrape(meter: dict[float, float]) -> MeterAt:
    def meter_at(t: float) -> float | None:
        before = [v for s, v in sorted(meter.items()) if s <= t]
        return before[-1] if before else None

    return meter_at


def test_a_session_across_the_night_windows_start_is_split_at_the_last_scrape_before_it() -> None:
    # 7 kW from 21:30 to 23:30: the meter scraped every 15 min, the last before 22:00 at 21:59:50
    meter = scrapes([("2026-03-10T21:45:00", 101.75), ("2026-03-10T21:59:50", 103.49), ("2026-03-10T22:15:00", 105.25)])
    cost = cost_of([(at("2026-03-10T21:30:00"), 100.0), (at("2026-03-10T23:30:00"), 114.0)], NIGHT, last_scrape(meter))
    assert [(p.energy_kwh, p.price) for p in cost.pieces] == [(3.49, 0.32), (10.51, 0.24)]
    assert sum(p.energy_kwh for p in cost.pieces) == 14.0
    assert cost.cost == Decimal("3.64")  # 3.49 × 0.32 + 10.51 × 0.24 = 1.1168 + 2.5224 = 3.6392
    assert cost.avg_price == Decimal("0.2599")


def test_a_night_across_midnight_and_a_tariff_change_by_from() -> None:
    meter = scrapes([("2026-06-30T23:59:45", 204.0), ("2026-07-01T00:00:15", 204.05)])
    cost = cost_of([(at("2026-06-30T23:00:00"), 200.0), (at("2026-07-01T01:00:00"), 208.0)], NIGHT, last_scrape(meter))
    assert [(p.energy_kwh, p.price) for p in cost.pieces] == [(4.0, 0.24), (4.0, 0.34)]
    assert cost.cost == Decimal("2.32")


def test_a_reading_outside_the_rows_own_readings_is_held_between_them() -> None:
    # the last scrape before 22:00 is older than the session's start: the part before 22:00 is 0, not negative
    meter = scrapes([("2026-03-10T21:50:00", 99.0)])
    cost = cost_of([(at("2026-03-10T21:59:00"), 100.0), (at("2026-03-10T22:30:00"), 104.0)], NIGHT, last_scrape(meter))
    assert [(p.energy_kwh, p.price) for p in cost.pieces] == [(0.0, 0.32), (4.0, 0.24)]
    assert cost.cost == Decimal("0.96")


def test_no_cost_when_the_price_or_a_meter_reading_at_a_change_is_unknown_or_the_energy_is() -> None:
    readings = [(at("2026-03-10T21:30:00"), 100.0), (at("2026-03-10T23:30:00"), 114.0)]
    assert cost_of(readings, NIGHT, lambda t: None) == Cost(None, None, (), (UNPRICED,))
    before = [(at("2025-12-31T20:00:00"), 1.0), (at("2025-12-31T21:00:00"), 2.0)]
    assert cost_of(before, NIGHT, lambda t: None).cost is None  # before the first tariff
    assert cost_of(readings, NIGHT, lambda t: 105.0, known=False) == Cost(None, None)


def test_a_price_series_is_its_last_sample_at_or_before_each_moment() -> None:
    series = PriceSeries.from_samples(
        "price",
        [(at("2026-03-10T11:00:07"), 0.30), (at("2026-03-10T11:30:07"), 0.30), (at("2026-03-10T12:00:07"), 0.10)],
    )
    assert series.steps.times == (at("2026-03-10T11:00:07"), at("2026-03-10T12:00:07"))  # only where it changes
    meter = scrapes([("2026-03-10T11:59:55", 5.0), ("2026-03-10T12:00:10", 5.1)])
    cost = cost_of([(at("2026-03-10T11:30:00"), 2.0), (at("2026-03-10T12:30:00"), 10.0)], series, last_scrape(meter))
    assert [(p.energy_kwh, p.price) for p in cost.pieces] == [(3.0, 0.30), (5.0, 0.10)]
    assert cost.cost == Decimal("1.40")
    assert series.price_at(at("2026-03-10T11:00:06")) is None


def test_money_rounds_half_up_to_the_cent_and_groups_add_their_rows() -> None:
    assert money(0.125) == Decimal("0.13")
    assert money(2.675) == Decimal("2.68")  # the float 2.675 is 2.67499999...: its decimal form is what is billed
    assert cost_of([(0.0, 0.0), (3600.0, 7.5)], Constant(0.32), lambda t: None).cost == Decimal("2.40")
    # a group: its rows' unrounded costs added, rounded once (1.014 + 2.024 = 3.038 → 3.04, not 1.01 + 2.02)
    rows = [Cost(money(1.014), None, exact=Decimal("1.014")), Cost(money(2.024), None, exact=Decimal("2.024"))]
    assert total(rows, 10.0) == Cost(Decimal("3.04"), Decimal("0.3038"), exact=Decimal("3.038"))
    assert total([*rows, Cost(None, None, (), (UNPRICED,))], 10.0).cost is None


def test_a_tariff_worked_out_once_for_a_year_gives_every_rows_changes_as_the_tariff_does() -> None:
    year = precomputed(NIGHT, at("2026-01-01T00:00:00"), at("2027-01-01T00:00:00"))
    # the night price at New Year's midnight, 06:00 and 22:00 on each of January-June's 181 days, 1 July's 0.34
    assert isinstance(year, Steps) and len(year.times) == 1 + 2 * 181 + 1
    for start in ("2026-03-10T21:30:00", "2026-03-28T21:00:00", "2026-06-30T23:00:00", "2026-10-24T12:00:00"):
        a = at(start)
        for hours in (0.5, 2, 10, 30):
            assert year.changes(a, a + hours * 3600) == NIGHT.changes(a, a + hours * 3600), (start, hours)
