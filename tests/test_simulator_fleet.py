"""The demo's simulated fleet looks like a real one: chargers start at different points of their cycle (not in step
with their site or firmware), and each site's load manager keeps the site within its grid capacity."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import yaml

from exporter.simulator import (
    CHARGING,
    IDLE,
    SITE_CAPACITY_W,
    SITES,
    SUSPENDED,
    SiteLoadManager,
    make_chargers,
    site_of,
)

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_800_000_000.0


def test_every_site_of_a_large_demo_has_chargers_in_every_state() -> None:
    chargers = make_chargers(200, now=T0)
    states = {site: Counter(c.state for c in chargers if c.site == site) for site in SITES[1:]}
    for site, counts in states.items():
        assert {CHARGING, IDLE, SUSPENDED} <= set(counts), (site, counts)
        assert 0.2 < counts[CHARGING] / sum(counts.values()) < 0.45, (site, counts)
    assert [c.site for c in chargers].count("home") == 1  # the home wallbox; the depots share the rest


def test_chargers_in_one_state_leave_it_at_different_times() -> None:
    charging = [c for c in make_chargers(60, now=T0) if c.state == CHARGING]
    ends = sorted(c.state_until for c in charging)
    assert len(charging) >= 15
    assert len({round(t) for t in ends}) == len(ends)
    assert ends[-1] - ends[0] > 1_200  # spread over at least 20 minutes of the cycle


def test_the_three_charger_demo_keeps_its_sites_and_states() -> None:
    garage, carport, visitor = make_chargers(3, now=T0)
    assert [c.site for c in (garage, carport, visitor)] == ["home", "depot-north", "depot-south"]
    assert [c.state for c in (garage, carport, visitor)] == [CHARGING, IDLE, SUSPENDED]
    assert [site_of(i) for i in range(5)] == ["home", "depot-north", "depot-south", "depot-north", "depot-south"]


def test_no_site_draws_more_than_its_capacity_and_the_fleet_still_charges() -> None:
    """200 chargers at ten times the speed for 15 simulated minutes, read every 10 s as a scrape would."""
    chargers = make_chargers(200, speed=10.0, now=T0)
    load = SiteLoadManager(chargers)
    peak: dict[str, float] = {}
    for step in range(1, 91):
        now = T0 + 10 * step
        load.advance(now)
        power: dict[str, float] = {}
        for charger in chargers:
            power[charger.site] = power.get(charger.site, 0.0) + charger.power
        for site, watts in power.items():
            assert watts <= SITE_CAPACITY_W[site], (step, site, watts)
            peak[site] = max(peak.get(site, 0.0), watts)
    for site in SITES[1:]:  # each depot charges near its capacity at some point: the limit binds, it is not idle
        assert peak[site] > 0.5 * SITE_CAPACITY_W[site], (site, peak[site])


def test_the_simulators_capacities_are_the_dashboards_capacities() -> None:
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "sites.yml").read_text(encoding="utf-8"))
    shipped = {
        rule["labels"]["site"]: float(rule["expr"].removeprefix("vector(").removesuffix(")"))
        for group in rules["groups"]
        for rule in group["rules"]
    }
    assert shipped == SITE_CAPACITY_W
