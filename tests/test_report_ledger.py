"""The ledger's reconstruction on synthetic scrapes: what `report sessions` and `report summary` make of them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pytest

from exporter.report.ledger import J_PER_KWH, Obs, Session, in_period, reconstruct, summarize
from exporter.report.periods import UsageError, month_period, period_from_args, rfc3339, year_period

BERLIN = ZoneInfo("Europe/Berlin")


@dataclass(frozen=True)
class Charge:
    """A session as the device runs it: start/end (Unix s), meter at start (kWh), constant power (W)."""

    start: float
    end: float
    meter_kwh: float
    power_w: float = 11_000.0
    meter_stop_kwh: float | None = None  # set to fake a replaced meter

    def energy_kwh(self, t: float) -> float:
        return self.power_w * (min(t, self.end) - self.start) / J_PER_KWH

    @property
    def stop_kwh(self) -> float:
        return self.meter_stop_kwh if self.meter_stop_kwh is not None else self.meter_kwh + self.energy_kwh(self.end)


def scrape(charges: Sequence[Charge], t: float) -> Obs | None:
    """What the exporter exposes at time t: the current or last session's series."""
    past = [c for c in charges if c.start <= t]
    if not past:
        return None
    c = past[-1]
    running = t < c.end
    if running:
        energy = c.energy_kwh(t) * J_PER_KWH
        return Obs(t, c.start, None, c.meter_kwh * J_PER_KWH, energy, "Authorized", "")
    stop = c.stop_kwh
    energy_j = (stop - c.meter_kwh) * J_PER_KWH
    # the exporter drops a negative meterStop - meterStart (exporter.scrape.families.add_derived)
    return Obs(t, c.start, c.end, c.meter_kwh * J_PER_KWH, energy_j if energy_j >= 0 else None, "Authorized", "Local")


def meter(charges: Sequence[Charge], t: float) -> float:
    """The charger's meter reading at the last scrape before t (kWh × 3.6e6)."""
    past = [c for c in charges if c.start <= t]
    if not past:
        return charges[0].meter_kwh * J_PER_KWH
    c = past[-1]
    kwh = c.meter_kwh + c.energy_kwh(t) if t < c.end else c.stop_kwh
    return kwh * J_PER_KWH


def scrapes(
    charges: Sequence[Charge], t0: float, t1: float, every: float = 15.0, down: tuple[float, float] | None = None
) -> list[Obs]:
    out = []
    t = t0
    while t < t1:
        if down is None or not down[0] <= t < down[1]:
            ob = scrape(charges, t)
            if ob is not None:
                out.append(ob)
        t += every
    return out


def rows(obs: list[Obs], horizon: float) -> list[Session]:
    return reconstruct(obs, horizon=horizon, fresh=300.0)


def test_a_session_over_the_month_boundary_is_listed_in_its_start_month_and_split_in_the_summaries() -> None:
    jan, feb = month_period("2026-01", BERLIN), month_period("2026-02", BERLIN)
    start = feb.start - 1_800  # 23:30 local on 31 January, one hour at 11 kW: 11 kWh, half in each month
    charges = [Charge(start, start + 3_600, 1_200.0), Charge(feb.start + 86_400, feb.start + 90_000, 0.0)]
    charges[1] = Charge(charges[1].start, charges[1].end, charges[0].stop_kwh)
    obs = scrapes(charges, jan.start - 3_600, feb.end, every=60.0)
    sessions = rows(obs, horizon=feb.end)
    listed_jan, listed_feb = in_period(sessions, jan.start, jan.end), in_period(sessions, feb.start, feb.end)
    assert [rfc3339(s.start, BERLIN) for s in listed_jan] == ["2026-01-31T23:30:00+01:00"]
    assert [rfc3339(s.start, BERLIN) for s in listed_feb] == ["2026-02-02T00:00:00+01:00"]
    assert listed_jan[0].energy_kwh == pytest.approx(11.0)
    assert listed_jan[0].end is not None and rfc3339(listed_jan[0].end, BERLIN) == "2026-02-01T00:30:00+01:00"
    # the summary splits it at the bound: the meter's reading at midnight (last scrape before it)
    s_jan = summarize(sessions, jan.start, jan.end, meter(charges, jan.start), meter(charges, jan.end))
    s_feb = summarize(sessions, feb.start, feb.end, meter(charges, feb.start), meter(charges, feb.end))
    assert s_jan.energy_kwh == pytest.approx(5.5, abs=1e-6)
    assert s_feb.energy_kwh == pytest.approx(5.5 + 11.0, abs=1e-6)
    assert (s_jan.sessions, s_feb.sessions) == (1, 1)
    assert s_jan.meter_end_kwh == s_feb.meter_start_kwh == pytest.approx(1_205.5)
    both = summarize(sessions, jan.start, feb.end, meter(charges, jan.start), meter(charges, feb.end))
    assert both.energy_kwh == pytest.approx(s_jan.energy_kwh + s_feb.energy_kwh)


def test_summary_and_sessions_agree_by_the_stated_rule() -> None:
    """Summary energy = sessions started in the period, minus what the one started before ran... exactly:
    Σ started-in-period energy − their part after the end + the earlier session's part inside the period."""
    day = 86_400.0
    a, b = 1_767_225_600.0, 1_767_225_600.0 + 10 * day  # 2026-01-01 .. 01-11 UTC
    charges: list[Charge] = []
    meter_kwh = 500.0
    for start in (a - 1_800, a + day, a + 3 * day, b - 600):
        c = Charge(start, start + 3_600, meter_kwh, 7_400.0)
        charges.append(c)
        meter_kwh = c.stop_kwh
    sessions = rows(scrapes(charges, a - 7_200, b + 7_200, every=30.0), horizon=b + 7_200)
    summary = summarize(sessions, a, b, meter(charges, a), meter(charges, b))
    started = in_period(sessions, a, b)
    carried_in = charges[0].energy_kwh(charges[0].end) - charges[0].energy_kwh(a - 30.0)
    carried_out = charges[-1].energy_kwh(charges[-1].end) - charges[-1].energy_kwh(b - 30.0)
    listed = sum(s.energy_kwh or 0.0 for s in started)
    assert summary.sessions == len(started) == 3
    assert summary.energy_kwh == pytest.approx(listed + carried_in - carried_out, abs=1e-6)


def test_a_running_session_has_no_end_and_its_energy_so_far() -> None:
    t0 = 1_767_225_600.0
    charges = [Charge(t0 + 60, t0 + 100_000, 10.0)]
    obs = scrapes(charges, t0, t0 + 3_600)
    [s] = rows(obs, horizon=t0 + 3_600)
    assert (s.status, s.end, s.duration_s, s.meter_stop_kwh) == ("running", None, None, None)
    assert s.energy_kwh == pytest.approx(11_000 * (t0 + 3_585 - (t0 + 60)) / J_PER_KWH)


def test_a_session_whose_end_was_never_scraped_is_incomplete_not_invented() -> None:
    t0 = 1_767_225_600.0
    first = Charge(t0 + 60, t0 + 3_600, 10.0)
    second = Charge(t0 + 4_000, t0 + 5_000, first.stop_kwh)
    # the exporter is down from 30 min into the first session until after the second began
    obs = scrapes([first, second], t0, t0 + 7_200, down=(t0 + 1_800, t0 + 4_200))
    one, two = rows(obs, horizon=t0 + 7_200)
    assert (one.status, one.end, one.energy_kwh, one.meter_stop_kwh) == ("incomplete", None, None, None)
    assert one.meter_start_kwh == pytest.approx(10.0)
    assert two.status == "ended" and two.energy_kwh == pytest.approx(11_000 * 1_000 / J_PER_KWH)
    # a charger that stopped answering during its last session: incomplete too, not running
    [stale] = rows(scrapes([first], t0, t0 + 1_800), horizon=t0 + 7_200)
    assert stale.status == "incomplete"


def test_a_replaced_meter_is_flagged_and_never_gives_negative_or_inflated_energy() -> None:
    t0 = 1_767_225_600.0
    first = Charge(t0 + 60, t0 + 3_660, 9_750.0)
    # the meter was swapped during the second session: meterStop is read from the new meter at 3 kWh
    swapped = Charge(t0 + 7_200, t0 + 10_800, first.stop_kwh, meter_stop_kwh=3.0)
    # third: runs on the new meter; a fourth on a used meter that reads 12,000 kWh more
    third = Charge(t0 + 14_400, t0 + 18_000, 3.0)
    fourth = Charge(t0 + 21_600, t0 + 25_200, 12_000.0, meter_stop_kwh=99_000.0)
    charges = [first, swapped, third, fourth]
    sessions = rows(scrapes(charges, t0, t0 + 28_800, every=60.0), horizon=t0 + 28_800)
    energies = [s.energy_kwh for s in sessions]
    assert energies[0] == pytest.approx(11.0)
    assert energies[1] is None and sessions[1].flags == ("meter_reset",)
    assert energies[2] == pytest.approx(11.0) and sessions[2].flags == ("meter_reset",)
    assert energies[3] is None and "meter_reset" in sessions[3].flags  # 87,000 kWh in an hour is no charge
    summary = summarize(sessions, t0, t0 + 28_800, meter(charges, t0), meter(charges, t0 + 28_800))
    assert summary.energy_kwh == pytest.approx(22.0) and "meter_reset" in summary.flags  # the two real hours


def test_berlin_months_follow_daylight_saving() -> None:
    march, october = month_period("2026-03", BERLIN), month_period("2026-10", BERLIN)
    assert (march.end - march.start) / 3_600 == 31 * 24 - 1  # 29 March: 02:00 -> 03:00
    assert (october.end - october.start) / 3_600 == 31 * 24 + 1
    assert rfc3339(march.start, BERLIN) == "2026-03-01T00:00:00+01:00"
    assert rfc3339(march.end, BERLIN) == "2026-04-01T00:00:00+02:00"
    year = year_period("2026", BERLIN)
    assert rfc3339(year.start, BERLIN) == "2026-01-01T00:00:00+01:00" and year.end - year.start == 365 * 86_400
    # a session across the switch: 01:30 CET to 03:30 CEST is one hour of charging
    start = march.start + 28 * 86_400 + 1.5 * 3_600
    [s] = rows(scrapes([Charge(start, start + 3_600, 0.0)], start - 60, start + 7_200), horizon=start + 7_200)
    assert rfc3339(s.start, BERLIN) == "2026-03-29T01:30:00+01:00"
    assert s.end is not None and rfc3339(s.end, BERLIN) == "2026-03-29T03:30:00+02:00"
    assert s.duration_s == 3_600


def test_two_sessions_between_two_scrapes_show_as_one_and_the_summary_keeps_the_energy() -> None:
    """The first of two sessions inside one scrape gap is invisible: the README's limit. Its energy is not lost
    from the summary (the meter rose), but no session row can be made of it."""
    t0 = 1_767_225_600.0
    a = Charge(t0 + 130, t0 + 160, 50.0)  # both between the scrapes at t0 + 120 and t0 + 240
    b = Charge(t0 + 165, t0 + 200, a.stop_kwh)
    c = Charge(t0 + 1_000, t0 + 1_600, b.stop_kwh)
    charges = [a, b, c]
    sessions = rows(scrapes(charges, t0, t0 + 3_600, every=120.0), horizon=t0 + 3_600)
    assert [s.start for s in sessions] == [b.start, c.start]
    summary = summarize(sessions, t0, t0 + 3_600, meter(charges, t0), meter(charges, t0 + 3_600))
    assert summary.sessions == 2
    assert summary.energy_kwh == pytest.approx(c.stop_kwh - 50.0)


def test_periods_and_their_usage_errors() -> None:
    p = period_from_args("2026-03-01", "2026-03-02", None, None, "Europe/Berlin")
    assert (p.start, p.end) == (1_772_319_600.0, 1_772_406_000.0)
    p = period_from_args("2026-03-01T00:00:00Z", "2026-03-01T12:00:00+01:00", None, None, "UTC")
    assert p.end - p.start == 11 * 3_600
    for args, message in (
        (("2026-03-02", "2026-03-01", None, None, "UTC"), "must be after --start"),
        ((None, None, "2026-13", None, "UTC"), "expected YYYY-MM"),
        ((None, None, "2026-03", None, "Mars/Olympus"), "unknown time zone 'Mars/Olympus'"),
        (("2026-03-01", None, None, None, "UTC"), "--start and --end go together"),
        ((None, None, "2026-03", "2026", "UTC"), "exactly one of"),
        (("yesterday", "2026-03-01", None, None, "UTC"), "--start: 'yesterday' is neither"),
    ):
        with pytest.raises(UsageError, match=message):
            period_from_args(*args)


def test_a_device_clock_an_hour_ahead_is_placed_at_the_scrapes_and_split_once() -> None:
    """An hour ahead across a month's end (a controller sending local time as Unix time): listed once, at the
    scrapes that saw it begin and end, flagged; its kWh the device's; the months add up to the whole."""
    jan, feb = month_period("2026-01", BERLIN), month_period("2026-02", BERLIN)
    real = Charge(feb.start - 1_800 + 10, feb.start + 1_800 + 10, 100.0)  # 23:30:10 to 00:30:10
    ahead = Charge(real.start + 3_600, real.end + 3_600, 100.0)  # what the device reports
    obs = [
        Obs(t, ob.start, ob.end, ob.meter_start_j, ob.energy_j, "Authorized", ob.stop_reason)
        for t in range(int(jan.end - 7_200), int(feb.start + 7_200), 60)
        if (ob := scrape([ahead], float(t) + 3_600)) is not None
    ]
    [s] = rows(obs, horizon=feb.start + 7_200)
    assert s.flags == ("device_clock",) and s.energy_kwh == pytest.approx(11.0)
    assert (s.start, s.end) == (feb.start - 1_800 + 60, feb.start + 1_800 + 60)  # the first scrapes that saw them
    assert in_period([s], jan.start, jan.end) == [s] and in_period([s], feb.start, feb.end) == []
    at_bound = meter([real], feb.start)
    s_jan = summarize([s], jan.start, jan.end, 100.0 * J_PER_KWH, at_bound)
    s_feb = summarize([s], feb.start, feb.end, at_bound, meter([real], feb.end))
    assert s_jan.energy_kwh + s_feb.energy_kwh == pytest.approx(11.0)
    assert "meter_reset" not in s_jan.flags + s_feb.flags


def test_started_time_zero_sessions_are_told_apart_by_their_meter_start() -> None:
    t0 = 1_767_225_600.0
    first = Charge(t0 + 600, t0 + 4_200, 10.0)
    second = Charge(t0 + 7_200, t0 + 9_000, first.stop_kwh)
    obs = [
        Obs(ob.t, 0.0, None if ob.end is None else ob.end, ob.meter_start_j, ob.energy_j, "Authorized", ob.stop_reason)
        for ob in scrapes([first, second], t0, t0 + 10_800, every=60.0)
    ]
    one, two = rows(obs, horizon=t0 + 10_800)
    assert (one.start, one.end, one.flags) == (t0 + 600, t0 + 4_200, ("device_clock",))
    assert (two.start, two.end) == (t0 + 7_200, t0 + 9_000)
    assert one.energy_kwh == pytest.approx(11.0) and two.energy_kwh == pytest.approx(5.5)


def test_a_look_back_that_still_holds_the_previous_end_does_not_end_the_next_session() -> None:
    """startedTime 0: the end of the previous session is no end of this one (a step's look back still has it)."""
    t0 = 1_767_225_600.0
    obs = [
        Obs(t0, 0.0, t0 - 100, 1.0 * J_PER_KWH, 3.6e6, "Authorized", "Local"),
        Obs(t0 + 300, 0.0, t0 - 100, 2.0 * J_PER_KWH, 1.0e6, "Authorized", ""),  # next session, old end in view
    ]
    one, two = rows(obs, horizon=t0 + 300)
    assert one.status == "ended" and two.status == "running" and two.end is None


def test_an_ended_session_stays_ended_and_only_the_latest_scrape_says_running() -> None:
    t0 = 1_767_225_600.0
    ended = Obs(t0 + 100, t0, t0 + 90, 0.0, 3.6e6, "Authorized", "Local", live=False)
    look_back = Obs(t0 + 300, t0, None, 0.0, 1.0e6, "Authorized", "", live=False)  # a removed target's old scrape
    [s] = rows([ended, look_back], horizon=t0 + 300)
    assert (s.status, s.end, s.energy_kwh) == ("ended", t0 + 90, 1.0)
    rebuilt = Obs(t0 + 200, t0 + 150, None, 0.0, None, "Authorized", "", live=False)  # a rules change, later
    scraped = Obs(t0 + 190, t0 + 150, None, 0.0, 7.2e5, "Authorized", "", live=True)
    [_, running] = rows([ended, scraped, rebuilt], horizon=t0 + 200)
    assert (running.status, running.energy_kwh) == ("running", 0.2)


def test_a_bound_without_data_before_it_is_placed_where_it_was_taken() -> None:
    """The history begins inside the period, in the middle of a session: the session's own meter start inside
    the period counts, and a session reading after the end's reading belongs to the next period."""
    t0 = 1_767_225_600.0
    s = Session(t0 + 100, t0 + 700, "ended", 50.0, 51.0, 1.0, "Authorized", "Local")
    summary = summarize([s], t0, t0 + 3_600, 50.2 * J_PER_KWH, 51.0 * J_PER_KWH, start_time=t0 + 400, end_time=t0 + 900)
    assert (summary.energy_kwh, summary.meter_start_kwh, summary.meter_start_time) == (1.0, 50.0, t0 + 100)
    # the end's reading taken before the session's end: the session's stop is the next period's
    early = summarize([s], t0, t0 + 800, 50.0 * J_PER_KWH, 50.9 * J_PER_KWH, start_time=t0 - 5, end_time=t0 + 650)
    later = summarize([s], t0 + 800, t0 + 3_600, 50.9 * J_PER_KWH, 51.0 * J_PER_KWH, start_time=t0 + 650)
    assert early.energy_kwh + later.energy_kwh == pytest.approx(1.0) and "meter_reset" not in early.flags


@pytest.mark.parametrize(
    ("kwh", "price", "cost"),
    [(0.125, 1.0, "0.13"), (1.005, 1.0, "1.01"), (10.0, 0.352, "3.52"), (2.5, 0.001, "0.00"), (0.0, 0.3, "0.00")],
)
def test_money_is_rounded_to_the_cent_half_away_from_zero(kwh: float, price: float, cost: str) -> None:
    from decimal import Decimal

    from exporter.report.ledger import cost as cost_of

    assert cost_of(kwh, price) == Decimal(cost) and str(cost_of(kwh, price)) == cost
