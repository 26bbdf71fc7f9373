"""``--tariff FILE``: the file checked like the config (every problem, file, key, what is wrong) and the price it sets
at every moment: windows across midnight, "24:00", days, ``from`` dates, Berlin's daylight-saving days."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from exporter.report.tariff import TariffError, TariffSchedule, load_tariff, parse_tariff
from tests.support.deploy import readme_section

BERLIN = ZoneInfo("Europe/Berlin")

ISSUE_EXAMPLE = """\
currency: EUR
tariffs:                      # each holds from its local date (in --tz) until the next one's
  - from: "2026-01-01"
    price: 0.32               # per kWh outside the windows
    windows:                  # local times; a window may wrap past midnight; "24:00" is allowed as an end
      - name: night
        days: [mon, tue, wed, thu, fri, sat, sun]   # optional: every day
        start: "22:00"
        end: "06:00"
        price: 0.24
  - from: "2026-07-01"        # a price change mid-year
    price: 0.34
"""


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN).timestamp()


def local(t: float) -> str:
    return datetime.fromtimestamp(t, tz=BERLIN).isoformat()


def schedule(text: str = ISSUE_EXAMPLE) -> TariffSchedule:
    return TariffSchedule(parse_tariff(text, "tariff.yml"), BERLIN)


def test_the_issues_example_prices_night_day_and_the_july_change() -> None:
    s = schedule()
    assert s.tariff.currency == "EUR"
    assert s.price_at(at("2026-03-10T21:59:59")) == 0.32
    assert s.price_at(at("2026-03-10T22:00:00")) == 0.24
    assert s.price_at(at("2026-03-11T05:59:59")) == 0.24  # the window wraps into the next morning
    assert s.price_at(at("2026-03-11T06:00:00")) == 0.32
    assert s.price_at(at("2026-06-30T23:00:00")) == 0.24
    assert s.price_at(at("2026-07-01T00:00:00")) == 0.34  # the new tariff takes over at its local midnight
    assert s.price_at(at("2026-07-01T23:00:00")) == 0.34
    assert s.price_at(at("2025-12-31T23:00:00")) is None  # before the first tariff: unknown, never guessed


def test_changes_list_only_real_changes_in_local_time() -> None:
    s = schedule()
    changes = [(local(t), p) for t, p in s.changes(at("2026-06-29T12:00:00"), at("2026-07-02T00:00:00"))]
    assert changes == [
        ("2026-06-29T12:00:00+02:00", 0.32),
        ("2026-06-29T22:00:00+02:00", 0.24),
        ("2026-06-30T06:00:00+02:00", 0.32),
        ("2026-06-30T22:00:00+02:00", 0.24),
        ("2026-07-01T00:00:00+02:00", 0.34),
    ]


@pytest.mark.parametrize(
    ("day", "evening", "morning"),
    [
        ("2026-03-28", "2026-03-28T22:00:00+01:00", "2026-03-29T06:00:00+02:00"),  # the night loses an hour
        ("2026-10-24", "2026-10-24T22:00:00+02:00", "2026-10-25T06:00:00+01:00"),  # the night gains one
    ],
)
def test_a_22_00_window_is_22_00_local_on_both_sides_of_a_daylight_saving_change(
    day: str, evening: str, morning: str
) -> None:
    s = schedule(ISSUE_EXAMPLE.split("  - from: \"2026-07-01\"", maxsplit=1)[0])  # the night tariff all year
    start = at(f"{day}T12:00:00")
    changes = [(local(t), p) for t, p in s.changes(start, start + 86_400)]
    assert changes[1:] == [(evening, 0.24), (morning, 0.32)]


def test_days_24_00_and_windows_at_any_minute() -> None:
    s = schedule(
        """\
tariffs:
  - from: "2026-01-01"
    price: 0.40
    windows:
      - {name: weekend, days: [sat, sun], start: "00:00", end: "24:00", price: 0.20}
      - {name: lunch, days: [mon, tue, wed, thu, fri], start: "11:47", end: "13:03", price: 0.10}
      - {name: thursday-night, days: [thu], start: "23:30", end: "00:15", price: 0.05}
"""
    )
    assert s.price_at(at("2026-03-06T11:46:59")) == 0.40  # Friday
    assert s.price_at(at("2026-03-06T11:47:00")) == 0.10
    assert s.price_at(at("2026-03-06T13:03:00")) == 0.40
    assert s.price_at(at("2026-03-05T23:30:00")) == 0.05  # Thursday night
    assert s.price_at(at("2026-03-06T00:14:59")) == 0.05  # Friday morning: Thursday's window still holds
    assert s.price_at(at("2026-03-06T00:15:00")) == 0.40
    assert s.price_at(at("2026-03-06T23:59:59")) == 0.40
    assert s.price_at(at("2026-03-07T00:00:00")) == 0.20  # Saturday
    assert s.price_at(at("2026-03-08T23:59:59")) == 0.20  # Sunday to 24:00
    assert s.price_at(at("2026-03-09T00:00:00")) == 0.40  # Monday
    assert s.price_at(at("2026-03-09T12:00:00")) == 0.10


PROBLEMS = """\
currency: euro
tarifs: []
tariffs:
  - from: "2026-13-01"
    price: -1
    windows:
      - name: night
        days: [mon, funday]
        start: 22:00
        end: "25:00"
        price: 0.24
        prize: 3
  - from: "2026-07-01"
    price: 0.34
    windows:
      - {name: a, start: "20:00", end: "23:00", price: 0.1}
      - {name: b, days: [tue], start: "22:30", end: "01:00", price: 0.2}
      - {name: c, start: "10:00", end: "10:00", price: 0.2}
  - from: "2026-06-01"
    price: "0,30"
"""


def test_every_problem_at_once_with_the_file_and_key_path() -> None:
    with pytest.raises(TariffError) as caught:
        parse_tariff(PROBLEMS, "tariff.yml")
    assert str(caught.value).splitlines() == [
        "tariff.yml: 12 problems in tariff",
        "  tariff.yml: tarifs: unknown key (did you mean 'tariffs'?)",
        "  tariff.yml: currency: expected a three-letter code such as EUR, got a string ('euro')",
        "  tariff.yml: tariffs[0].from: expected a date \"YYYY-MM-DD\", got a string ('2026-13-01')",
        "  tariff.yml: tariffs[0].price: expected a price per kWh from 0 to 100, got -1",
        "  tariff.yml: tariffs[0].windows[0].prize: unknown key (did you mean 'price'?)",
        "  tariff.yml: tariffs[0].windows[0].days[1]: expected one of mon, tue, wed, thu, fri, sat, sun, "
        "got a string ('funday')",
        '  tariff.yml: tariffs[0].windows[0].start: expected a time "HH:MM" in quotes; YAML read it as the number '
        "1320",
        "  tariff.yml: tariffs[0].windows[0].end: expected a time \"00:00\" to \"24:00\", got a string ('25:00')",
        "  tariff.yml: tariffs[1].windows[1]: overlaps 'a' on tue 22:30: which price would hold is unclear",
        '  tariff.yml: tariffs[1].windows[2]: starts and ends at 10:00: a window needs a length ("00:00" to '
        '"24:00" is the whole day)',
        "  tariff.yml: tariffs[2].price: expected a price per kWh (a number such as 0.32), got a string ('0,30')",
        "  tariff.yml: tariffs[2].from: 2026-06-01 is not after the tariff before it (2026-07-01)",
    ]


def test_one_problem_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(TariffError) as caught:
        load_tariff(str(tmp_path / "missing.yml"))
    assert str(caught.value) == f"{tmp_path / 'missing.yml'}: cannot read the tariff file (No such file or directory)"
    bad = tmp_path / "t.yml"
    bad.write_text("tariffs: [{from: '2026-01-01', price: 0.3}\n", encoding="utf-8")
    with pytest.raises(TariffError) as caught:
        load_tariff(str(bad))
    assert str(caught.value) == f"{bad}: line 2, column 1: expected ',' or ']', but got '<stream end>'"
    bad.write_text("currency: EUR\n", encoding="utf-8")
    with pytest.raises(TariffError) as caught:
        load_tariff(str(bad))
    assert str(caught.value) == f"{bad}: tariffs: missing"


def test_describe_names_every_price() -> None:
    assert schedule().tariff.describe() == "from 2026-01-01: 0.32; night 22:00-06:00: 0.24 | from 2026-07-01: 0.34"


def test_the_readmes_tariff_is_the_issues_example_and_loads() -> None:
    section = readme_section("Energy reports")
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", section, flags=re.DOTALL) if "tariffs:" in b]
    days = "# optional: every day"
    assert block == ISSUE_EXAMPLE.replace(days, f"{days} (the days a window starts on)")
    assert parse_tariff(block, "README").describe() == schedule().tariff.describe()


def test_a_file_of_endless_problems_stops_at_a_hundred() -> None:
    # one bad mapping, referenced a thousand times by a YAML alias
    text = "bad: &w {" + ", ".join(f"k{i}: 1" for i in range(500)) + "}\ntariffs: [" + ", ".join(["*w"] * 1000) + "]\n"
    with pytest.raises(TariffError) as caught:
        parse_tariff(text, "bomb.yml")
    lines = str(caught.value).splitlines()
    assert lines[0] == "bomb.yml: more than 100 problems in tariff"
    assert lines[1] == "  bomb.yml: bad: unknown key (expected currency, tariffs)"
    assert lines[-1] == "  bomb.yml: ... and more: stopped after the first 100 problems"
