"""The files people hand on: the spreadsheet read back cell by cell, the statement's content, ``--output`` atomic and
never overwriting without ``--force``, a price series that is not one series, relative periods."""

from __future__ import annotations

import os
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from exporter.cli import main
from exporter.report.client import PromClient
from exporter.report.outfile import OutputError, ReportInfo, write_atomic
from exporter.report.periods import period_from_args
from exporter.report.pricequeries import extend, fetch_price_series
from exporter.report.xlsx import render_xlsx
from tests.support.promfake import FakeState, fake_prometheus

MARCH = ("--month", "2026-03", "--tz", "Europe/Berlin")
SOURCE = "pulsatrix-exporter report: source: raw\n"  # which series the figures came from
# 13:00-14:00 costs 0.10, the rest 0.30: the session (12:00-13:55, 7.5 kWh at an even pace) has 3.913043 kWh
# before 13:00 (the meter's reading then) and 3.586957 after: 1.1739129 + 0.3586957 = 1.5326086 → 1.53
TARIFF = """\
currency: EUR
tariffs:
  - from: "2026-01-01"
    price: 0.30
    windows: [{name: lunch, start: "13:00", end: "14:00", price: 0.10}]
"""


def report(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["report", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def tariff(tmp_path: Path) -> str:
    path = tmp_path / "tariff.yml"
    path.write_text(TARIFF, encoding="utf-8")
    return str(path)


def test_sessions_and_summary_cost_at_the_tariffs_price_of_each_hour(
    capsys: pytest.CaptureFixture[str], tariff: str
) -> None:
    with fake_prometheus() as (url, _):
        code, out, err = report(capsys, "sessions", "--prometheus", url, *MARCH, "--tariff", tariff)
        assert (code, err) == (0, SOURCE)
        assert out.splitlines()[1].endswith(",ended,,1.53,EUR,0.2043")
        code, out, err = report(capsys, "summary", "--prometheus", url, *MARCH, "--tariff", tariff, "--by", "site")
        assert (code, err) == (0, SOURCE)
        assert out.splitlines() == [
            "site,period_start,period_end,energy_kwh,sessions,chargers,flags,cost,currency,avg_price",
            "home,2026-03-01T00:00:00+01:00,2026-04-01T00:00:00+02:00,7.500,1,1,,1.53,EUR,0.2043",
        ]


def test_the_spreadsheet_has_numbers_date_times_a_frozen_bold_header_totals_and_its_parameters(
    capsys: pytest.CaptureFixture[str], tariff: str, tmp_path: Path
) -> None:
    target = tmp_path / "garage-2026-03.xlsx"
    with fake_prometheus() as (url, _):
        args = ("sessions", "--prometheus", url, *MARCH, "--tariff", tariff, "--format", "xlsx")
        code, out, err = report(capsys, *args, "--output", str(target))
    assert (code, out, err) == (0, "", SOURCE)
    book = openpyxl.load_workbook(target, data_only=True)
    assert book.sheetnames == ["sessions", "report"]
    sheet = book["sessions"]
    assert sheet.freeze_panes == "A2"
    header = [c.value for c in sheet[1]]
    assert header == [
        "charger", "site", "period_start (Europe/Berlin)", "period_end (Europe/Berlin)", "start (Europe/Berlin)",
        "end (Europe/Berlin)", "duration_s", "energy_kwh",
        "meter_start_kwh", "meter_stop_kwh", "start_reason", "stop_reason", "status", "flags", "cost (EUR)",
        "currency", "avg_price (EUR/kWh)",
    ]  # fmt: skip
    assert all(c.font.b for c in sheet[1])
    row = {h: c for h, c in zip(header, sheet[2], strict=True)}
    assert row["start (Europe/Berlin)"].value == datetime(2026, 3, 1, 12, 0)
    assert row["period_end (Europe/Berlin)"].value == datetime(2026, 4, 1)  # local midnight, +02:00 by then
    assert row["start (Europe/Berlin)"].number_format == "yyyy-mm-dd hh:mm:ss"
    assert (row["energy_kwh"].value, row["energy_kwh"].number_format) == (7.5, "0.000")
    assert (row["meter_start_kwh"].value, row["meter_start_kwh"].number_format) == (1200, "0.000")
    assert (row["duration_s"].value, row["duration_s"].number_format) == (6900, "0")
    assert (row["cost (EUR)"].value, row["cost (EUR)"].number_format) == (1.53, '#,##0.00 "EUR"')
    assert row["avg_price (EUR/kWh)"].number_format == '0.0000 "EUR/kWh"'
    assert row["flags"].value is None
    totals = {h: c for h, c in zip(header, sheet[3], strict=True)}
    assert totals["charger"].value == "Total" and totals["charger"].font.b
    assert (totals["energy_kwh"].value, totals["cost (EUR)"].value, totals["start (Europe/Berlin)"].value) == (
        7.5, 1.53, 1,
    )  # fmt: skip
    assert totals["start (Europe/Berlin)"].number_format == '0 "sessions"'
    formulas = openpyxl.load_workbook(target)["sessions"]
    assert (formulas["H3"].value, formulas["O3"].value, formulas["E3"].value) == (
        "=SUM(H2:H2)", "=SUM(O2:O2)", "=COUNTA(E2:E2)",
    )  # fmt: skip
    params = {r[0].value: r[1].value for r in book["report"].iter_rows(min_row=2) if r[0].value}
    assert params["period"] == "2026-03"
    assert params["from (Europe/Berlin)"] == datetime(2026, 3, 1)
    assert params["to, exclusive (Europe/Berlin)"] == datetime(2026, 4, 1)
    assert params["time zone"] == "Europe/Berlin: every date-time in this file is local time there"
    assert params["server"] == url
    assert params["pricing"] == f"tariff {tariff}: from 2026-01-01: 0.3; lunch 13:00-14:00: 0.1"
    assert params["flag"] == "meaning" and params["(none)"] == "no row carries a flag"


def test_the_statement_is_self_contained_and_says_what_a_reader_needs(
    capsys: pytest.CaptureFixture[str], tariff: str, tmp_path: Path
) -> None:
    target = tmp_path / "statement.html"
    with fake_prometheus() as (url, _):
        args = ("sessions", "--prometheus", url, *MARCH, "--tariff", tariff, "--format", "html")
        assert report(capsys, *args, "--output", str(target))[0] == 0
    page = target.read_text(encoding="utf-8")
    for absent in ("<script", "src=", "href=", "url(", "@import"):
        assert absent not in page.lower(), absent
    for present in (
        "<h1>Charging statement 2026-03</h1>",
        "<dt>Period</dt><dd>2026-03-01 00:00 to 2026-04-01 00:00 (end exclusive)</dd>",
        "<dt>Time zone</dt><dd>Europe/Berlin: every time in this statement is local time there</dd>",
        f"<dt>Read from</dt><dd>{url} (raw)</dd>",
        "<td>garage</td><td>home</td>",  # the charger and its label
        # the meter at the bounds: the last scrape before each, with its time
        '<td class="n">1,200.000<br><span class="note">2026-02-28 23:59:50</span></td>',
        '<td class="n">1,207.500<br><span class="note">2026-03-31 23:59:50</span></td>',
        '<td class="t">2026-03-01 12:00</td><td class="t">2026-03-01 13:55</td><td class="n">7.500</td>',
        '<td class="n">1.53 EUR</td>',
        "<title>2026-03-01: 7.500 kWh</title>",  # the day's bar in the chart
        "@page { size: A4;",
        "tr { break-inside: avoid; }",
        "No row carries a flag",
    ):
        assert present in page, present
    assert page.count("<rect ") == 31  # a bar per day of March


def test_output_is_refused_when_the_file_exists_unless_forced(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "march.csv"
    target.write_text("keep me\n", encoding="utf-8")
    with fake_prometheus() as (url, state):
        code, out, err = report(capsys, "sessions", "--prometheus", url, *MARCH, "--output", str(target))
        assert (code, out) == (2, "")
        refused = f"--output: '{target}' exists; pass --force to replace it"
        assert err.endswith(f"pulsatrix-exporter report: error: {refused}\n")
        assert state.queries == []  # refused before anything was asked
        assert target.read_text(encoding="utf-8") == "keep me\n"
        code, _, err = report(capsys, "sessions", "--prometheus", url, *MARCH, "--output", str(target), "--force")
    assert (code, err) == (0, SOURCE)
    assert target.read_text(encoding="utf-8").startswith("charger,site,period_start,period_end,start,end,")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["march.csv"]  # no temporary file left behind


def test_an_interrupted_write_leaves_the_old_file_and_no_part(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "march.csv"
    target.write_text("old\n", encoding="utf-8")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OutputError, match=r"cannot write '.*march.csv' \(No space left on device\)"):
        write_atomic(str(target), b"new\n", force=True)
    assert target.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["march.csv"]


def test_a_price_series_must_be_one_series_and_nothing_is_written(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "out.csv"
    base = ("sessions", "--month", "2026-03", "--tz", "Europe/Berlin", "--output", str(target))
    for series, found in (([], "no series"), ([[(1_772_300_000.0, 0.3)], [(1_772_300_000.0, 0.2)]], "2 series")):
        with fake_prometheus(FakeState(price_series=series)) as (url, _):
            code, out, err = report(capsys, *base, "--prometheus", url, "--price-series", "price")
        assert (code, out) == (2, "")
        assert err.splitlines()[-1] == (
            f"pulsatrix-exporter report: error: --price-series: 'price' returned {found} from {url} between a week "
            "before the period and its end; it must return exactly one (the price per kWh)"
        )
        assert not target.exists()


def test_a_price_series_prices_each_part_of_a_session_at_its_last_sample(capsys: pytest.CaptureFixture[str]) -> None:
    # 0.40 from before the month, 0.20 from 13:00:07 (the scrape that first showed it): the meter then read
    # 1200 + 7.5 × 3607/6900 = 1203.920652; 3.920652 × 0.40 + 3.579348 × 0.20 = 1.5682608 + 0.7158696 = 2.2841304
    state = FakeState(price_series=[[(1_772_300_000.0, 0.40), (START_1300 + 7, 0.20)]])
    with fake_prometheus(state) as (url, _):
        code, out, err = report(capsys, "sessions", "--prometheus", url, *MARCH, "--price-series", "price")
    assert (code, err) == (0, SOURCE)
    assert out.splitlines()[1].endswith(",ended,,2.28,EUR,0.3046")


START_1300 = 1_772_366_400.0  # 2026-03-01T13:00:00+01:00


@pytest.mark.parametrize(
    ("now", "month", "year", "label"),
    [
        ("2026-04-01T00:30:00+02:00", "last", None, "2026-03"),  # the job just after midnight in Berlin (22:30 UTC)
        ("2026-03-31T23:30:00+00:00", "last", None, "2026-03"),  # 01:30 on April 1st in Berlin
        ("2026-04-15T12:00:00+02:00", "this", None, "2026-04"),
        ("2026-01-01T00:10:00+01:00", "last", None, "2025-12"),
        ("2026-01-01T00:10:00+01:00", None, "last", "2025"),
        ("2025-12-31T23:10:00+00:00", None, "this", "2026"),
    ],
)
def test_relative_periods_are_in_the_zone(now: str, month: str | None, year: str | None, label: str) -> None:
    period = period_from_args(None, None, month, year, "Europe/Berlin", now=datetime.fromisoformat(now).timestamp())
    assert period.label == label
    assert datetime.fromtimestamp(period.start, tz=ZoneInfo("Europe/Berlin")).hour == 0


def test_one_run_writes_several_files_named_by_the_period(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    names = [str(tmp_path / f"{{period}}-sessions.{ext}") for ext in ("csv", "xlsx", "html")]
    with fake_prometheus() as (url, state):
        code, out, err = report(capsys, "sessions", "--prometheus", url, *MARCH, *(f"--output={n}" for n in names))
        asked = len(state.queries)
        assert (code, out, err) == (0, "", SOURCE)
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            "2026-03-sessions.csv", "2026-03-sessions.html", "2026-03-sessions.xlsx",
        ]  # fmt: skip
        assert (tmp_path / "2026-03-sessions.csv").read_text(encoding="utf-8").startswith("charger,site,period_start,")
        assert (tmp_path / "2026-03-sessions.xlsx").read_bytes()[:2] == b"PK"
        assert "<h1>Charging statement 2026-03</h1>" in (tmp_path / "2026-03-sessions.html").read_text("utf-8")
        code, _, _ = report(capsys, "sessions", "--prometheus", url, *MARCH, f"--output={names[0]}")
        assert code == 2 and len(state.queries) == asked  # the existing file is refused before any query
    code, _, err = report(capsys, "sessions", "--prometheus", url, *MARCH, "--output", str(tmp_path / "x.txt"))
    assert code == 2
    assert err.endswith(f"--output {tmp_path / 'x.txt'}: give --format, or a name ending .csv, .json, .xlsx or .html\n")


def test_the_three_ways_to_price_exclude_each_other(capsys: pytest.CaptureFixture[str], tariff: str) -> None:
    for extra in (("--price", "0.3", "--tariff", tariff), ("--tariff", tariff, "--price-series", "price")):
        with pytest.raises(SystemExit) as exited:
            main(["report", "sessions", "--prometheus", "http://127.0.0.1:9", *MARCH, *extra])
        assert exited.value.code == 2
        second = extra[2]
        first = extra[0]
        assert capsys.readouterr().err.endswith(f"error: argument {second}: not allowed with argument {first}\n")


def test_a_summary_spreadsheet_totals_its_groups_and_explains_its_flags(tmp_path: Path) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    info = ReportInfo(
        "summary", "2026-03", 1_772_319_600.0, 1_774_994_400.0, berlin, "Europe/Berlin", "http://prometheus:9090",
        "rules", "price 0.30", "EUR", 1_775_000_000.0, ("site=~\"depot-.*\"",), ("meter_reset",),
    )  # fmt: skip
    columns = ["site", "energy_kwh", "sessions", "chargers", "flags", "cost", "currency", "avg_price"]
    rows = [
        {"site": "depot-1", "energy_kwh": 21860.424, "sessions": 1706, "chargers": 50, "flags": "",
         "cost": Decimal("6558.13"), "currency": "EUR", "avg_price": Decimal("0.3000")},
        {"site": "depot-2", "energy_kwh": 22114.355, "sessions": 1655, "chargers": 50, "flags": "meter_reset",
         "cost": None, "currency": "EUR", "avg_price": None},
    ]  # fmt: skip
    target = tmp_path / "sites.xlsx"
    target.write_bytes(render_xlsx(info, columns, rows))
    book = openpyxl.load_workbook(target, data_only=True)
    sheet = book["summary"]
    assert [c.value for c in sheet[4]] == ["Total", 43974.779, 3361, 100, None, 6558.13, None, None]
    assert sheet["E3"].value == "meter_reset" and sheet["F3"].value is None  # a flagged row: no cost, never 0
    params = {r[0].value: r[1].value for r in book["report"].iter_rows(min_row=2) if r[0].value}
    assert str(params["meter_reset"]).startswith("the meter was replaced or reset")
    assert params["matchers"] == 'site=~"depot-.*"'


def test_a_price_series_is_read_on_for_a_session_followed_past_the_period() -> None:
    month_end = 1_775_001_600.0  # 2026-04-01T00:00:00+02:00
    points = [(1_772_300_000.0, 0.40), (month_end + 2 * 86_400, 0.10), (month_end + 5 * 86_400, 0.50)]
    with fake_prometheus(FakeState(price_series=[points])) as (url, _):
        client = PromClient(url)
        series = fetch_price_series(client, "price", 1_772_319_600.0, month_end + 86_400)
        assert series.price_at(month_end + 3 * 86_400) == 0.40  # not read that far yet
        later = extend(client, series, month_end + 4 * 86_400)
    assert later.changes(month_end, month_end + 4 * 86_400) == [(month_end, 0.40), (month_end + 2 * 86_400, 0.10)]
    assert later.until == month_end + 4 * 86_400
