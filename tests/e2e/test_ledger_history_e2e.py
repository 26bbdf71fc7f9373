"""The bill against ground truth on a history written with past timestamps (issue 25): an HA pair's two copies of
every series (prometheus-operator's external labels, each replica missing scrapes the other has) and the ledger
rules' change series as each replica recorded them, imported into one VictoriaMetrics and, as blocks written by
promtool, into one Prometheus: every test runs on both. Every scenario of the
issue is one charger: a Berlin summer month without --tz, a 37-hour session across the month's end, a device
clock an hour ahead across it, startedTime 0, a meter swap, a site changed mid-session, a move from /metrics to
/probe mid-session, two depots' `garage`, a gap in the rules, a period before the data, one not yet over. The
rules path and the raw path give the same rows on the same data."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.ledger import (
    ROOT,
    Box,
    Plug,
    Replica,
    backfill_prometheus,
    history,
    import_history,
    report_here,
    run_victoriametrics,
)
from tests.support.servers import Server, run_prometheus

pytestmark = pytest.mark.e2e

H = 3_600.0
EVERY = 300.0  # scrape interval of the written history


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


T0, T1 = utc("2025-07-20T00:00"), utc("2025-08-03T00:00")
GAP = (utc("2025-07-21T02:00"), utc("2025-07-21T06:00"))  # the rules were not running
LONG = Plug(utc("2025-07-31T18:00"), utc("2025-07-31T18:00") + 37 * H, 3_700.0)  # 136.9 kWh, to 2 August
CLOCK = Plug(utc("2025-07-31T21:31:40"), utc("2025-07-31T22:31:40"))  # 23:31 to 00:31 in Berlin, device +1 h
HOME = [
    Plug(utc("2025-07-25T17:00"), utc("2025-07-25T18:00")),
    Plug(utc("2025-07-31T18:00"), utc("2025-07-31T20:00")),  # 20:00 to 22:00 CEST: July
    Plug(utc("2025-07-31T22:30"), utc("2025-07-31T23:30"), 3_700.0),  # 00:30 CEST on 1 August: August
]
SWAP = [
    Plug(utc("2025-07-24T08:00"), utc("2025-07-24T09:00")),
    Plug(utc("2025-07-25T08:00"), utc("2025-07-25T09:00"), swap_to_kwh=2.0),  # meterStop from the new meter
    Plug(utc("2025-07-26T08:00"), utc("2025-07-26T09:00")),
]
SITE_CHANGE = utc("2025-07-28T12:02:30")
MOVE = utc("2025-07-29T12:02:30")


def boxes(now: float) -> list[Box]:
    span = (T0, T1)
    recent = (now - 6 * H, now)  # its last scrape is the fixture's now
    depot = {"site": "depot"}
    return [
        Box("home", {"site": "home"}, 1_200.0, HOME, span),
        Box("long", depot, 50.0, [LONG], span),
        Box("clock", depot, 80.0, [CLOCK], span, clock=H),
        Box(
            "zero",
            depot,
            10.0,
            [
                Plug(utc("2025-07-26T10:00"), utc("2025-07-26T11:00")),
                Plug(utc("2025-07-27T10:00"), utc("2025-07-27T12:00")),
            ],
            span,
            zero_start=True,
        ),
        Box("swap", depot, 500.0, SWAP, span),
        Box(
            "relabel",
            {"site": "north"},
            300.0,
            [
                Plug(utc("2025-07-27T11:00"), utc("2025-07-27T12:00")),
                Plug(utc("2025-07-28T11:00"), utc("2025-07-28T13:00")),
                Plug(utc("2025-07-29T11:00"), utc("2025-07-29T12:00")),
            ],
            span,
            relabel=[(SITE_CHANGE, {"site": "south"})],
        ),
        Box(
            "moved",
            depot,
            700.0,
            [Plug(utc("2025-07-29T11:00"), utc("2025-07-29T13:00"))],
            span,
            relabel=[(MOVE, {"job": "pulsatrix-probe", "instance": "http://10.0.0.7/"})],
        ),
        Box("garage", {"depot": "north"}, 1_000.0, [Plug(utc("2025-07-27T18:00"), utc("2025-07-27T19:00"))], span),
        Box("garage", {"depot": "south"}, 2_000.0, [Plug(utc("2025-07-27T20:00"), utc("2025-07-27T22:00"))], span),
        Box("gap", depot, 5.0, [Plug(utc("2025-07-21T03:00"), utc("2025-07-21T04:00"))], span),
        Box(
            "now",
            depot,
            40.0,
            [Plug(recent[1] - 4 * H, recent[1] - 3 * H), Plug(recent[1] - H, recent[1] + 9 * H)],
            recent,
        ),
    ]


@pytest.fixture(scope="module")
def written() -> tuple[list[dict[str, Any]], float]:
    """The history's lines, made once for both engines, and the time they end."""
    now = time.time()
    pair = [
        Replica({"prometheus": "monitoring/k8s", "prometheus_replica": "prometheus-k8s-0"}, lambda k: k % 7 == 3),
        Replica(
            {"prometheus": "monitoring/k8s", "prometheus_replica": "prometheus-k8s-1"},
            lambda k: k % 11 == 5 and k % 7 != 3,
        ),
    ]
    return history(boxes(now), pair, EVERY, rule_gaps=[GAP]), now


@pytest.fixture(scope="module", params=["victoriametrics", "prometheus"])
def store(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    written: tuple[list[dict[str, Any]], float],
) -> Iterator[tuple[Server, float]]:
    """The history in VictoriaMetrics (its import API) or in Prometheus (blocks from promtool): every scenario on
    both engines."""
    lines, now = written
    if request.param == "victoriametrics":
        with run_victoriametrics(Path(tmp_path_factory.mktemp("vm"))) as vm:
            import_history(vm, lines)
            yield vm, now
        return
    work = Path(tmp_path_factory.mktemp("prom"))
    backfill_prometheus(lines, work / "data")
    with run_prometheus({"global": {}}, work, extra_args=["--storage.tsdb.retention.time=100y"]) as prom:
        yield prom, now


def rows(store: tuple[Server, float], view: str, *args: str) -> tuple[list[dict[str, Any]], str]:
    vm, _ = store
    code, out, err = report_here(view, "--prometheus", vm.url, *args)
    assert code == 0, err
    return out, err


def test_sessions_are_listed_once_against_the_generators_truth(store: tuple[Server, float]) -> None:
    period = ("--start", "2025-07-23T00:00:00Z", "--end", "2025-08-01T12:00:00Z", "--tz", "Europe/Berlin")
    by_source = {s: rows(store, "sessions", *period, "--source", s) for s in ("raw", "rules", "auto")}
    for source, (_, err) in by_source.items():
        assert f"source: {'raw' if source == 'raw' else 'rules'}" in err, (source, err)
    raw, _ = by_source["raw"]
    for source in ("rules", "auto"):
        assert [_same(r) for r in by_source[source][0]] == [_same(r) for r in raw], source
    listed = {(r["charger"], r["depot"], r["start"]): r for r in raw}
    # one row per session: the HA pair's copies, the site change and the /probe move each listed once
    assert sorted(c for c, _, _ in listed) == sorted(
        [
            "clock",
            "garage",
            "garage",
            "home",
            "home",
            "home",
            "long",
            "moved",
            "relabel",
            "relabel",
            "relabel",
            "swap",
            "swap",
            "swap",
            "zero",
            "zero",
        ]
    )
    long = listed[("long", "", "2025-07-31T20:00:00+02:00")]
    assert (long["status"], long["end"], long["energy_kwh"]) == ("ended", "2025-08-02T09:00:00+02:00", 136.9)
    clock = listed[("clock", "", "2025-07-31T23:35:00+02:00")]  # the first scrape that showed it, not 00:31
    assert (clock["end"], clock["energy_kwh"], clock["flags"]) == ("2025-08-01T00:35:00+02:00", 11.0, "device_clock")
    zero = sorted((r for r in raw if r["charger"] == "zero"), key=lambda r: r["start"])
    assert [(r["start"], r["energy_kwh"], r["flags"]) for r in zero] == [
        ("2025-07-26T12:00:00+02:00", 11.0, "device_clock"),
        ("2025-07-27T12:00:00+02:00", 22.0, "device_clock"),
    ]
    swap = sorted((r for r in raw if r["charger"] == "swap"), key=lambda r: r["start"])
    assert [(r["energy_kwh"], r["flags"]) for r in swap] == [(11.0, ""), (None, "meter_reset"), (11.0, "meter_reset")]
    relabel = sorted((r for r in raw if r["charger"] == "relabel"), key=lambda r: r["start"])
    assert [r["site"] for r in relabel] == ["north", "north", "south"]  # the labels it carried when it began
    assert [r["energy_kwh"] for r in relabel] == [11.0, 22.0, 11.0]
    garages = sorted((r["depot"], r["energy_kwh"]) for r in raw if r["charger"] == "garage")
    assert garages == [("north", 11.0), ("south", 22.0)]


def _same(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "source"}


def summary(store: tuple[Server, float], *args: str) -> tuple[dict[tuple[str, ...], dict[str, Any]], str]:
    out, err = rows(store, "summary", *args)
    return {(r["charger"], r["depot"], r["site"]): r for r in out}, err


def test_summaries_split_each_kwh_once_and_the_rules_agree_with_the_raw_series(store: tuple[Server, float]) -> None:
    period = ("--start", "2025-07-23T00:00:00Z", "--end", "2025-08-01T12:00:00Z", "--tz", "Europe/Berlin")
    raw, _ = summary(store, *period, "--source", "raw")
    rules, _ = summary(store, *period, "--source", "rules")
    assert {k: _same(v) for k, v in rules.items()} == {k: _same(v) for k, v in raw.items()}
    energy = {k: (r["energy_kwh"], r["sessions"], r["flags"]) for k, r in raw.items()}
    assert energy == {
        ("home", "", "home"): (36.7, 3, ""),  # the HA pair's two copies counted once
        ("long", "", "depot"): (66.6, 1, ""),  # 18 h of its 37 at 3.7 kW
        ("clock", "", "depot"): (11.0, 1, "device_clock"),
        ("zero", "", "depot"): (33.0, 2, "device_clock"),
        ("swap", "", "depot"): (22.0, 3, "meter_reset"),  # what ran on the old meter after its last reading: left out
        ("relabel", "", "north"): (22.0, 2, ""),  # to the first scrape that carried site=south (12:05)
        ("relabel", "", "south"): (22.0, 1, ""),
        ("moved", "", "depot"): (22.0, 1, ""),  # /metrics then /probe: one charger
        ("garage", "north", ""): (11.0, 1, ""),  # same name, another depot: two chargers
        ("garage", "south", ""): (22.0, 1, ""),
        ("gap", "", "depot"): (0.0, 0, ""),
    }
    home = raw[("home", "", "home")]
    assert (home["meter_start_kwh"], home["meter_start_time"]) == (1_200.0, "2025-07-23T02:00:00+02:00")
    assert (home["meter_end_kwh"], home["meter_end_time"]) == (1_236.7, "2025-08-01T14:00:00+02:00")
    assert (home["period_start"], home["period_end"]) == ("2025-07-23T02:00:00+02:00", "2025-08-01T14:00:00+02:00")
    north, south = raw[("relabel", "", "north")], raw[("relabel", "", "south")]
    assert north["meter_end_kwh"] == south["meter_start_kwh"] == 322.0
    by_site, _ = rows(store, "summary", *period, "--by", "site", "--source", "rules", "--price", "0.3")
    sites = {r["site"]: (r["energy_kwh"], r["sessions"], r["chargers"], r["cost"]) for r in by_site}
    assert sites["north"] == (22.0, 2, 1, 6.6) and sites["south"] == (22.0, 1, 1, 6.6)
    # the depot holds the swapped meter: its row is flagged meter_reset, and a flagged row has no cost (issue 27)
    assert sites["depot"] == (66.6 + 11 + 33 + 22 + 22, 1 + 1 + 2 + 3 + 1, 6, None)
    assert "meter_reset" in next(r["flags"] for r in by_site if r["site"] == "depot")


def test_a_berlin_month_without_tz_and_a_session_across_its_end(
    store: tuple[Server, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    july, err = summary(store, "--month", "2025-07")
    assert "the period begins before the oldest data the server holds" in err
    assert "reading the raw series" in err  # the rules' heartbeat does not cover July: auto takes the raw series
    home = july[("home", "", "home")]
    assert (home["period_start"], home["period_end"]) == ("2025-07-01T00:00:00+02:00", "2025-08-01T00:00:00+02:00")
    assert (home["energy_kwh"], home["sessions"], home["flags"]) == (33.0, 2, "no_data_at_start")
    assert home["meter_start_time"] == "2025-07-20T02:00:00+02:00"  # the first reading after the start
    august, _ = summary(store, "--month", "2025-08")
    assert (august[("home", "", "home")]["energy_kwh"], august[("home", "", "home")]["sessions"]) == (3.7, 1)
    assert august[("home", "", "home")]["flags"] == "no_data_at_end"  # the history ends on 3 August
    long_jul, long_aug = july[("long", "", "depot")], august[("long", "", "depot")]
    assert (long_jul["energy_kwh"], long_aug["energy_kwh"]) == (14.8, 122.1)  # 136.9 split at midnight
    clock_jul, clock_aug = july[("clock", "", "depot")], august[("clock", "", "depot")]
    assert clock_jul["energy_kwh"] + clock_aug["energy_kwh"] == pytest.approx(11.0, abs=0.001)
    assert "meter_reset" not in clock_jul["flags"] + clock_aug["flags"]
    listed, _ = rows(store, "sessions", "--month", "2025-07", "--match", 'charger=~"home|long"')
    assert [(r["charger"], r["start"], r["status"], r["energy_kwh"]) for r in listed] == [
        ("home", "2025-07-25T19:00:00+02:00", "ended", 11.0),
        ("home", "2025-07-31T20:00:00+02:00", "ended", 22.0),
        ("long", "2025-07-31T20:00:00+02:00", "ended", 136.9),  # followed to its end on 2 August
    ]


def test_a_gap_in_the_rules_is_read_from_the_raw_series(store: tuple[Server, float]) -> None:
    period = ("--start", "2025-07-20T12:00:00Z", "--end", "2025-07-22T00:00:00Z", "--match", 'charger="gap"')
    auto, err = rows(store, "sessions", *period, "--tz", "UTC")
    assert "has gaps" in err and "source: raw" in err
    assert [(r["start"], r["energy_kwh"]) for r in auto] == [("2025-07-21T03:00:00+00:00", 11.0)]
    _, err = rows(store, "sessions", *period, "--tz", "UTC", "--source", "rules")
    assert "has gaps" in err and "may miss sessions" in err


def test_a_period_not_yet_over(store: tuple[Server, float]) -> None:
    _, now = store
    day = 86_400
    period = ("--start", _iso(now - day), "--end", _iso(now + day), "--tz", "UTC", "--match", 'charger="now"')
    for source in ("raw", "rules"):
        listed, _ = rows(store, "sessions", *period, "--source", source)
        assert [(r["status"], r["energy_kwh"]) for r in listed] == [("ended", 11.0), ("running", 11.0)], source
        [row], _ = rows(store, "summary", *period, "--source", source)
        assert (row["energy_kwh"], row["flags"]) == (22.0, "no_data_at_start period_open"), source
        assert row["meter_end_time"] == _iso(round(now)).replace("Z", "+00:00")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def test_the_shipped_longterm_store_keeps_one_copy_of_an_ha_pair(tmp_path: Path, store: tuple[Server, float]) -> None:
    """VictoriaMetrics as the compose `longterm` profile runs it (the replica label dropped on the way in, one
    sample per scrape interval): one series per charger, and the same bill as the report's own merging gives."""
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text(encoding="utf-8"))
    flags = [f for f in compose["services"]["victoriametrics"]["command"] if f.startswith(("-relabel", "-dedup"))]
    flags = [f.replace("/etc/victoriametrics/", f"{ROOT}/deploy/victoriametrics/") for f in flags]
    assert len(flags) == 2
    _, now = store
    pair = [Replica({"prometheus": "monitoring/k8s", "prometheus_replica": f"prometheus-k8s-{i}"}) for i in (0, 1)]
    with run_victoriametrics(tmp_path / "vm", flags) as vm:
        import_history(vm, history([b for b in boxes(now) if b.name in ("home", "relabel")], pair, EVERY))
        expr = "count by (charger, site) (last_over_time(pulsatrix_energy_imported_joules_total[10d]))"
        answer = vm.get("/api/v1/query", query=expr, time=f"{T1 - 1:.0f}")
        counts = {(r["metric"]["charger"], r["metric"]["site"]): r["value"][1] for r in answer["data"]["result"]}
        assert counts == {("home", "home"): "1", ("relabel", "north"): "1", ("relabel", "south"): "1"}
        period = ("--start", "2025-07-23T00:00:00Z", "--end", "2025-08-01T12:00:00Z", "--tz", "Europe/Berlin")
        code, ours, err = report_here("summary", "--prometheus", vm.url, *period, "--by", "site", "--source", "rules")
        assert code == 0, err
    theirs, _ = rows(
        store, "summary", *period, "--by", "site", "--source", "rules", "--match", 'charger=~"home|relabel"'
    )
    assert [_same(r) for r in ours] == [_same(r) for r in theirs]
