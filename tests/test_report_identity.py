"""Who is which charger, the rules' change series carried forward, and the machine's zone: the report's rules
that do not fit the reconstruction's test file, each on synthetic input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from exporter.report import identity
from exporter.report.ledger import J_PER_KWH, Obs, reconstruct
from exporter.report.periods import UsageError, machine_zone, zone
from exporter.report.recorded import _carry_forward
from exporter.report.series import END, ENERGY, INFO, METER_START, START

T0 = 1_767_225_600.0


def labels(**kw: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(kw.items()))


def test_a_charger_is_its_own_labels_never_the_scrapes() -> None:
    drop = identity.dropped(["cluster_replica"])
    key = labels(charger="garage", site="home", job="pulsatrix", instance="x:9821", prometheus="monitoring/k8s",
                 prometheus_replica="prometheus-k8s-1", replica="b", cluster_replica="2")  # fmt: skip
    assert identity.charger_labels(key, drop) == labels(charger="garage", site="home", prometheus="monitoring/k8s")


def session(t: float, start: float, who: tuple[tuple[str, str], ...], end: float | None = None) -> Obs:
    return Obs(t, start, end, 0.0, None if end is None else 3.6e6, "Authorized", "Local" if end else "", labels=who)


def test_label_sets_that_show_one_session_are_one_charger_and_same_names_elsewhere_stay_two() -> None:
    north, south = labels(charger="bay", site="north"), labels(charger="bay", site="south")
    depot_a, depot_b = labels(charger="garage", depot="a"), labels(charger="garage", depot="b")
    looks = {
        north: [session(T0, T0 - 60, north)],
        south: [session(T0 + 60, T0 - 60, south, T0 + 100), session(T0 + 400, T0 + 300, south)],
        depot_a: [session(T0, T0 - 600, depot_a)],
        depot_b: [session(T0, T0 - 900, depot_b)],
        labels(charger="zero", site="x"): [session(T0, 0.0, labels(charger="zero", site="x"))],
        labels(charger="zero", site="y"): [session(T0, 0.0, labels(charger="zero", site="y"))],  # 0 joins nothing
    }
    groups = sorted(c.label_sets for c in identity.group(looks))
    assert ((north, south)) in groups and (depot_a,) in groups and (depot_b,) in groups
    assert len(groups) == 5
    merged = [ob for k in (north, south) for ob in looks[k]]
    first, second = reconstruct(merged, horizon=T0 + 400, fresh=300)
    assert (first.labels, first.status, second.labels) == (north, "ended", south)  # listed under its start's labels


def test_segments_begin_at_a_new_label_set_and_ignore_looks_back_at_one_already_left() -> None:
    north, south = labels(charger="bay", site="north"), labels(charger="bay", site="south")
    looks = [session(T0 + 10, 1.0, north), session(T0 + 20, 1.0, south), session(T0 + 300, 1.0, north)]
    assert identity.segments(looks, T0, north) == [(T0, north), (T0 + 20, south)]


def test_the_rules_changes_carry_no_energy_or_end_into_the_next_session() -> None:
    """A meter swapped at a session's end: the exporter drops the negative energy, so the rules record none; the
    session must not inherit the previous one's kWh (the rules path gave it, and put meter_reset on the next)."""
    h = 3_600.0
    changes: list[tuple[float, str, Any]] = [
        (T0, START, T0 - 10),
        (T0, METER_START, 500.0 * J_PER_KWH),
        (T0, INFO, ("Authorized", "")),
        (T0 + h, END, T0 + h - 10),
        (T0 + h, ENERGY, 11.0 * J_PER_KWH),
        (T0 + 2 * h, START, T0 + 2 * h - 10),  # the swapped one
        (T0 + 2 * h, METER_START, 511.0 * J_PER_KWH),
        (T0 + 3 * h, END, T0 + 3 * h - 10),  # its energy: none recorded (meterStop below meterStart)
        (T0 + 4 * h, START, 0.0),  # startedTime 0: its end must not be the previous one's
        (T0 + 4 * h, METER_START, 2.0 * J_PER_KWH),
    ]
    obs = _carry_forward(changes, labels(charger="swap"))
    first, swapped, third = reconstruct(obs, horizon=T0 + 4 * h, fresh=300)
    assert first.energy_kwh == pytest.approx(11.0)
    assert (swapped.energy_kwh, swapped.flags) == (None, ("meter_reset",))
    assert third.end is None and third.meter_start_kwh == pytest.approx(2.0)


def test_the_machines_zone_from_tz_or_etc_or_a_usage_error(tmp_path: Path) -> None:
    assert str(machine_zone({"TZ": "Europe/Berlin"}, tmp_path)) == "Europe/Berlin"
    assert str(machine_zone({"TZ": ":/usr/share/zoneinfo/America/New_York"}, tmp_path)) == "America/New_York"
    (tmp_path / "localtime").symlink_to("/usr/share/zoneinfo/Europe/Lisbon")
    assert str(machine_zone({}, tmp_path)) == "Europe/Lisbon"
    (tmp_path / "localtime").unlink()
    (tmp_path / "timezone").write_text("Asia/Tokyo\n")
    assert str(machine_zone({"TZ": "CET-1CEST"}, tmp_path)) == "Asia/Tokyo"  # a POSIX rule is no IANA name
    (tmp_path / "timezone").unlink()
    with pytest.raises(UsageError, match="give --tz ZONE"):
        zone(None, {}, tmp_path)
    assert str(zone(None, {"TZ": "Europe/Berlin"}, tmp_path)) == "Europe/Berlin"
