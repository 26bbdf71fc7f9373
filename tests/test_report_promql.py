"""The PromQL the report sends (exporter/report/promql.py), pinned: a change to a query is a change to what the
report reads, so it shows here first. Each runs on Prometheus 2.42 and VictoriaMetrics 1.79 in tests/e2e."""

from __future__ import annotations

from exporter.report import promql

SITE = ['site="home"']
START = "pulsatrix_session_start_timestamp_seconds"
END = "pulsatrix_session_end_timestamp_seconds"
METER_START = "pulsatrix_session_meter_start_joules"
SESSION = f"{START}|{END}|{METER_START}|pulsatrix_session_energy_joules|pulsatrix_session_info"
RECORDED = (
    f"{START}:changes|{END}:changes|{METER_START}:changes|pulsatrix_session_energy_joules:ended_changes"
    "|pulsatrix_session_info:changes"
)


def test_the_event_query_asks_for_the_steps_where_a_session_began_or_ended() -> None:
    s, e, m = f'{START}{{site="home"}}', f'{END}{{site="home"}}', f'{METER_START}{{site="home"}}'
    events = (
        f"changes({s}[360s]) > 0 or changes({m}[360s]) > 0"
        f" or (last_over_time({s}[360s]) unless last_over_time({s}[360s] offset 360s))"
        f" or (last_over_time({e}[360s]) unless last_over_time({e}[360s] offset 360s))"
        f" or (last_over_time({e}[360s]) != last_over_time({e}[360s] offset 360s))"
    )
    assert promql.event_query(END, SITE, ["charger", "site"]) == (
        f"last_over_time({e}[360s]) and on(charger, site) ({events})"
    )
    # the reasons as the step's last scrape had them: a plain selector
    assert promql.event_query("pulsatrix_session_info", [], ["charger"]).startswith(
        "pulsatrix_session_info and on(charger) (changes(pulsatrix_session_start_timestamp_seconds[360s]) > 0"
    )


def test_the_crowded_steps_are_two_changes_or_one_where_the_series_appeared() -> None:
    s, m = f'{START}{{site="home"}}', f'{METER_START}{{site="home"}}'
    assert promql.crowded_query(SITE) == (
        f"changes({s}[360s]) > 1 or changes({m}[360s]) > 1"
        f" or ((changes({s}[360s]) > 0 or changes({m}[360s]) > 0)"
        f" and (last_over_time({s}[360s]) unless last_over_time({s}[360s] offset 360s)))"
    )


def test_raw_samples_meter_readings_and_their_windows() -> None:
    assert promql.raw_window(SITE, 660) == f'{{__name__=~"{SESSION}",site="home"}}[660s]'
    assert promql.meter_samples(SITE, 300) == 'pulsatrix_energy_imported_joules_total{site="home"}[300s]'
    assert (
        promql.meter_count(SITE, 3600.4)
        == 'count_over_time(pulsatrix_energy_imported_joules_total{site="home"}[3600s])'
    )
    assert promql.key_matchers((("charger", 'a"b\\c'), ("site", "x"))) == ['charger="a\\"b\\\\c"', 'site="x"']


def test_the_rules_heartbeat_and_change_series() -> None:
    assert promql.heartbeat_minute() == (
        "(sum(count_over_time(pulsatrix:ledger_recording[150s])) or vector(0)) > bool 0"
    )
    assert promql.heartbeat_covered() == (
        "min_over_time(((sum(count_over_time(pulsatrix:ledger_recording[150s])) or vector(0)) > bool 0)[3600s:60s])"
    )
    assert promql.heartbeat_count(86_400) == "sum(count_over_time(pulsatrix:ledger_recording[86400s]))"
    assert promql.session_count(SITE, 3_600) == f'count(count_over_time({START}{{site="home"}}[3600s]))'
    assert promql.recorded_before(SITE, 400 * 86_400) == (
        f'last_over_time({{__name__=~"{RECORDED}",site="home"}}[34560000s])'
    )
    assert promql.recorded_range([], 604_800) == f'{{__name__=~"{RECORDED}"}}[604800s]'
