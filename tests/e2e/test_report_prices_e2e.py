"""Cost to the cent on a real Prometheus: a history written as the exporter would have exposed it (backfilled with
``promtool tsdb create-blocks-from openmetrics``: no waiting for scrapes), read back by ``report`` with a night
tariff and with a day-ahead price series, against costs worked out here from the generator's own meter.

The meter is scraped every 60 s at 7 s past the minute, so a price change never falls on a scrape: the meter at a
change is the scrape 53 s before it, the rule the report states. The expected cents are literals (worked out from
the generator's numbers, independently of exporter.report.pricing) and checked against the same calculation.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pypdfium2 as pdfium  # type: ignore[import-untyped]
import pytest

from exporter.report.outfile import ReportInfo
from exporter.report.statement import render_statement
from tests.support.browser import open_page
from tests.support.servers import Prometheus, find_binary, promtool, run_prometheus

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BERLIN = ZoneInfo("Europe/Berlin")
J = 3_600_000.0
SCRAPE, METER_PHASE, PRICE_PHASE = 60, 7, 23
PRICE = "day_ahead_price_eur_per_kwh"

TARIFF = """\
currency: EUR
tariffs:
  - from: "2026-01-01"
    price: 0.32
    windows: [{name: night, start: "22:00", end: "06:00", price: 0.24}]
  - from: "2026-07-01"
    price: 0.34
    windows: [{name: night, start: "22:00", end: "06:00", price: 0.26}]
"""


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN).timestamp()


@dataclass(frozen=True)
class Run:
    charger: str
    site: str
    start: float
    end: float
    power_w: float
    meter_start_kwh: float

    @property
    def energy_kwh(self) -> float:
        return round(self.power_w * (self.end - self.start) / J, 6)

    def meter(self, t: float) -> float:
        """The charger's meter (kWh) at t, as a scrape at t read it."""
        done = min(max(t, self.start), self.end) - self.start
        return round(self.meter_start_kwh + self.power_w * done / J, 6)


GARAGE = [
    # straddles the night window's start (22:00)
    Run("garage", "home", at("2026-03-10T21:30:00"), at("2026-03-10T23:30:00"), 7_400, 1_200.0),
    # a night across midnight that ends after the window (06:00)
    Run("garage", "home", at("2026-03-11T23:00:00"), at("2026-03-12T07:00:00"), 3_700, 1_214.8),
    # the night Berlin loses an hour (22:00 +01:00 to 06:00 +02:00)
    Run("garage", "home", at("2026-03-28T21:00:00"), at("2026-03-29T07:30:00"), 3_700, 1_244.4),
    # the tariff changes by `from` at midnight, inside the night window (0.24 → 0.26)
    Run("garage", "home", at("2026-06-30T23:00:00"), at("2026-07-01T01:00:00"), 11_000, 1_279.55),
]
DEPOT = [
    # price series that changes every quarter hour during the session
    Run("bay-1", "depot", at("2026-03-10T10:05:00"), at("2026-03-10T11:50:00"), 11_000, 500.0),
    Run("bay-2", "depot", at("2026-03-10T14:02:00"), at("2026-03-10T15:10:00"), 7_400, 80.0),
]
DAY = (at("2026-03-09T23:30:00"), at("2026-03-11T00:30:00"))  # the depot's history is continuous over this


def quarter_price(t: float) -> float:
    """The day-ahead price of the quarter hour holding t: 0.10 to 0.33 EUR/kWh over the day."""
    local = datetime.fromtimestamp(t, tz=BERLIN)
    quarter = local.hour * 4 + local.minute // 15
    return round(0.10 + (quarter * 7 % 24) / 100, 2)


def scrapes(a: float, b: float, phase: int) -> list[int]:
    first = int(a) - int(a) % SCRAPE + phase
    return [t for t in range(first, int(b), SCRAPE) if t >= a]


def openmetrics(runs: list[Run], windows: dict[str, list[tuple[float, float]]]) -> str:
    """The session series and the meter of every charger in its windows, and the price series over DAY."""
    series: dict[str, list[str]] = {n: [] for n in (
        "pulsatrix_session_start_timestamp_seconds", "pulsatrix_session_end_timestamp_seconds",
        "pulsatrix_session_meter_start_joules", "pulsatrix_session_energy_joules", "pulsatrix_session_info",
        "pulsatrix_energy_imported_joules",
    )}  # fmt: skip
    for charger, spans in windows.items():
        mine = sorted((r for r in runs if r.charger == charger), key=lambda r: r.start)
        labels = f'charger="{charger}",site="{mine[0].site}",job="pulsatrix"'
        for a, b in spans:
            for t in scrapes(a, b, METER_PHASE):
                before = [r for r in mine if r.start <= t]
                last = before[-1] if before else None
                meter = last.meter(t) if last else mine[0].meter_start_kwh
                series["pulsatrix_energy_imported_joules"].append(f"_total{{{labels}}} {meter * J:.3f} {t}")
                if last is None:
                    continue
                running = t < last.end
                info = f'{labels},start_reason="Authorized",stop_reason="{"" if running else "EVDisconnected"}"'
                series["pulsatrix_session_start_timestamp_seconds"].append(f"{{{labels}}} {last.start:.0f} {t}")
                if not running:
                    series["pulsatrix_session_end_timestamp_seconds"].append(f"{{{labels}}} {last.end:.0f} {t}")
                meter_start = last.meter_start_kwh * J
                series["pulsatrix_session_meter_start_joules"].append(f"{{{labels}}} {meter_start:.3f} {t}")
                energy = (last.meter(t) - last.meter_start_kwh) * J
                series["pulsatrix_session_energy_joules"].append(f"{{{labels}}} {energy:.3f} {t}")
                series["pulsatrix_session_info"].append(f"{{{info}}} 1 {t}")
    lines = []
    for name, samples in series.items():
        kind = "counter" if name.endswith("imported_joules") else "gauge"
        lines.append(f"# TYPE {name} {kind}")
        lines += [name + s for s in samples]
    lines.append(f"# TYPE {PRICE} gauge")
    lines += [f'{PRICE}{{zone="DE-LU"}} {quarter_price(t)} {t}' for t in scrapes(*DAY, PRICE_PHASE)]
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def expected_cost(run: Run, changes: list[tuple[float, float]]) -> Decimal:
    """The ground truth: ``changes`` are (moment, price) with the price at the session's start first; the meter at
    a change is the last meter scrape at or before it, held within the session's own readings."""
    total = Decimal(0)
    m0 = run.meter_start_kwh
    stop = round(run.meter_start_kwh + run.energy_kwh, 6)
    price = changes[0][1]
    for moment, new_price in [*changes[1:], (run.end, 0.0)]:
        if moment >= run.end:
            m = stop
        else:
            scrape = max(s for s in scrapes(moment - 2 * SCRAPE, moment + 1, METER_PHASE) if s <= moment)
            m = min(max(run.meter(scrape), m0), stop)
        total += Decimal(str(round(m - m0, 6))) * Decimal(str(price))
        m0, price = m, new_price
        if moment >= run.end:
            break
    return total.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def report(url: str, *args: str) -> list[dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "exporter", "report", *args, "--prometheus", url, "--tz", "Europe/Berlin"]
    out = subprocess.run([*cmd, "--format", "json"], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    rows: list[dict[str, Any]] = json.loads(out.stdout)
    return rows


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Any:
    find_binary("promtool")
    work = tmp_path_factory.mktemp("prices")
    # March continuous for the garage (its statement reads the meter at every tariff change of the month), then
    # the hours around its session in June; the depot for one day
    march = (at("2026-02-28T23:00:00"), at("2026-04-01T01:00:00"))
    windows = {"garage": [march, (GARAGE[3].start - 1_800, GARAGE[3].end + 1_800)], "bay-1": [DAY], "bay-2": [DAY]}
    data = work / "history.om"
    data.write_text(openmetrics(GARAGE + DEPOT, windows), encoding="utf-8")
    tsdb = work / "data"
    done = promtool("tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=2400h", str(data), str(tsdb))
    assert done.returncode == 0, done.stderr
    with run_prometheus(
        {"global": {"scrape_interval": "60s"}}, work, extra_args=["--storage.tsdb.retention.time=100y"]
    ) as server:
        yield server


def test_night_tariff_costs_each_session_to_the_cent(prometheus: Prometheus, tmp_path: Path) -> None:
    tariff = tmp_path / "tariff.yml"
    tariff.write_text(TARIFF, encoding="utf-8")
    rows = report(
        prometheus.url, "sessions", "--start", "2026-03-01", "--end", "2026-07-02", "--match", 'charger="garage"',
        "--tariff", str(tariff),
    )  # fmt: skip
    changes = [
        [(GARAGE[0].start, 0.32), (at("2026-03-10T22:00:00"), 0.24)],
        [(GARAGE[1].start, 0.24), (at("2026-03-12T06:00:00"), 0.32)],
        [(GARAGE[2].start, 0.32), (at("2026-03-28T22:00:00"), 0.24), (at("2026-03-29T06:00:00"), 0.32)],
        [(GARAGE[3].start, 0.24), (at("2026-07-01T00:00:00"), 0.26)],
    ]
    truth = [expected_cost(run, c) for run, c in zip(GARAGE, changes, strict=True)]
    assert [str(c) for c in truth] == ["3.84", "7.40", "9.18", "5.50"]
    assert [(r["start"], r["energy_kwh"], r["cost"], r["currency"]) for r in rows] == [
        ("2026-03-10T21:30:00+01:00", 14.8, 3.84, "EUR"),
        ("2026-03-11T23:00:00+01:00", 29.6, 7.4, "EUR"),
        ("2026-03-28T21:00:00+01:00", 35.15, 9.18, "EUR"),
        ("2026-06-30T23:00:00+02:00", 22.0, 5.5, "EUR"),
    ]
    assert [r["cost"] for r in rows] == [float(c) for c in truth]


def test_a_day_ahead_price_series_costs_sessions_and_bills_the_site(prometheus: Prometheus) -> None:
    expr = f'{PRICE}{{zone="DE-LU"}}'
    period = ("--start", "2026-03-10", "--end", "2026-03-11", "--price-series", expr)
    sessions = report(prometheus.url, "sessions", *period, "--match", 'site="depot"')
    truth = []
    for run in DEPOT:
        # the price changes at the first price scrape of each quarter hour (23 s past its first minute)
        quarters = [q + PRICE_PHASE for q in range(int(run.start) - int(run.start) % 900 + 900, int(run.end), 900)]
        changes = [(run.start, quarter_price(run.start)), *((q, quarter_price(q)) for q in quarters)]
        truth.append(expected_cost(run, changes))
    assert [str(c) for c in truth] == ["4.44", "1.89"]
    assert [(r["charger"], r["energy_kwh"], r["cost"]) for r in sessions] == [
        ("bay-1", 19.25, 4.44),
        ("bay-2", 8.387, 1.89),
    ]
    (site,) = report(prometheus.url, "summary", *period, "--by", "site", "--match", 'site="depot"')
    del site["avg_price"]
    assert site == {
        "site": "depot", "period_start": "2026-03-10T00:00:00+01:00", "period_end": "2026-03-11T00:00:00+01:00",
        "energy_kwh": 27.637, "sessions": 2, "chargers": 2, "flags": "", "cost": 6.33, "currency": "EUR",
        "source": "raw",
    }  # fmt: skip


async def test_the_statement_prints_from_chromium_as_a_clean_pdf(prometheus: Prometheus, tmp_path: Path) -> None:
    """The company-car driver's March statement from the real Prometheus, opened and printed by headless Chromium
    (docs/report-statement.png is this screenshot)."""
    tariff = tmp_path / "tariff.yml"
    tariff.write_text(TARIFF, encoding="utf-8")
    statement = tmp_path / "garage-2026-03.html"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable, "-m", "exporter", "report", "sessions", "--prometheus", prometheus.url, "--month", "2026-03",
        "--tz", "Europe/Berlin", "--match", 'charger="garage"', "--tariff", "tariff.yml", "--format", "html",
        "--output", statement.name,
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *cmd, env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert (process.returncode, out, err) == (0, b"", b"pulsatrix-exporter report: source: raw\n")
    page = statement.read_text(encoding="utf-8")
    assert '<td class="n">3.84 EUR</td>' in page and "EUR *" not in page
    # the month's meter rise priced at every tariff change (the charger's row and its total) and the sessions'
    # total agree: 3.84 + 7.40 + 9.18
    assert page.count('<td class="n">20.42 EUR</td>') == 3
    assert "No row carries a flag" in page
    shot, pdf = tmp_path / "statement.png", tmp_path / "statement.pdf"
    await open_page(statement.as_uri(), 900, f"--screenshot={shot}", height=1300)
    await open_page(statement.as_uri(), 900, f"--print-to-pdf={pdf}", "--no-pdf-header-footer")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-")
    assert data.count(b"/Type /Page\n") + data.count(b"/Type /Page>") + data.count(b"/Type /Page/") >= 1
    if os.environ.get("PULSATRIX_UPDATE_DOCS") == "1":
        (ROOT / "docs" / "report-statement.png").write_bytes(shot.read_bytes())


def test_a_price_expression_is_evaluated_once_a_minute(prometheus: Prometheus) -> None:
    """Not a plain selector (a unit conversion): Prometheus takes no range on it, so the report evaluates it each
    minute; a price scraped at 23 s past a minute is in force from the next whole minute."""
    expr = f'{PRICE}{{zone="DE-LU"}} * 1000 / 1000'
    rows = report(prometheus.url, "sessions", "--start", "2026-03-10", "--end", "2026-03-11", "--price-series", expr)
    truth = []
    for run in DEPOT:
        quarters = [q + SCRAPE for q in range(int(run.start) - int(run.start) % 900 + 900, int(run.end), 900)]
        changes = [(run.start, quarter_price(run.start)), *((q, quarter_price(q)) for q in quarters)]
        truth.append(expected_cost(run, changes))
    assert [str(c) for c in truth] == ["4.44", "1.89"]  # 37 s later per change than the raw samples: < 1 cent
    assert [r["cost"] for r in rows if r["charger"] != "garage"] == [float(c) for c in truth]


async def test_a_long_statement_prints_with_every_row_whole_and_the_header_on_every_page(tmp_path: Path) -> None:
    """120 sessions over four A4 pages: each row's text is on one page, whole; each page's table starts with the
    header; no column is cut at the right edge (the flags column's header is on every page)."""
    start = datetime(2026, 3, 1, 8, 0, tzinfo=BERLIN)
    sessions: list[dict[str, Any]] = []
    for i in range(120):
        s = start + timedelta(hours=6 * i)
        sessions.append({
            "charger": f"bay-{i % 3 + 1}", "start": s.isoformat(), "end": (s + timedelta(minutes=95)).isoformat(),
            "energy_kwh": 7.5, "meter_start_kwh": 1000 + 7.5 * i, "meter_stop_kwh": 1007.5 + 7.5 * i,
            "status": "ended", "flags": "meter_reset unpriced" if i == 50 else "", "cost": Decimal("2.25"),
        })  # fmt: skip
    info = ReportInfo(
        "sessions", "2026-03", at("2026-03-01T00:00:00"), at("2026-04-01T00:00:00"), BERLIN, "Europe/Berlin",
        "http://prometheus:9090", "rules", "0.3 EUR/kWh at every hour (--price)", "EUR", at("2026-04-01T00:30:00"),
        flags=("meter_reset", "unpriced"),
    )  # fmt: skip
    page = tmp_path / "long.html"
    page.write_text(render_statement(info, sessions, [], ["site"]), encoding="utf-8")
    pdf_path = tmp_path / "long.pdf"
    await open_page(page.as_uri(), 900, f"--print-to-pdf={pdf_path}", "--no-pdf-header-footer")
    pdf = pdfium.PdfDocument(str(pdf_path))
    pages = [pdf[i].get_textpage().get_text_range().splitlines() for i in range(len(pdf))]
    assert len(pages) >= 3
    header = "charger start end energy (kWh) meter start meter stop status cost flags"
    assert all(lines[0] == header for lines in pages[1:]), [lines[0] for lines in pages]
    text = [line for lines in pages for line in lines]
    for row in sessions:
        when = datetime.fromisoformat(row["start"]).strftime("%Y-%m-%d %H:%M")
        whole = [line for line in text if f"{row['charger']} {when} " in line]
        assert len(whole) == 1 and whole[0].endswith(("2.25 EUR", "2.25 EUR meter_reset")), (when, whole)
