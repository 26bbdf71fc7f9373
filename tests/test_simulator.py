"""The built-in charger simulator behaves like a real device (it is what the demo and the e2e tests run against)."""

from __future__ import annotations

import itertools
import json
import math

from exporter.scrape.parse import decode_body, parse_values
from exporter.simulator import (
    CHARGING,
    CONNECTED,
    IDLE,
    POWER_FACTOR,
    SIMULATOR,
    SUSPENDED,
    SimAuth,
    create_simulator_app,
    make_chargers,
    set_fault,
)
from tests.support.fleet import ClientFactory, MakeFleet

T0 = 1_800_000_000.0


def test_sessions_cycle_through_the_states_in_order() -> None:
    charger = make_chargers(2, speed=20.0, seed=3, now=T0)[1]  # starts Idle
    seen = [charger.state]
    energy = [charger.energy_kwh]
    t = T0
    for _ in range(3 * 3600):
        t += 1
        charger.advance(t)
        energy.append(charger.energy_kwh)
        if charger.state != seen[-1]:
            seen.append(charger.state)
    # Idle → EVConnected → Charging → SuspendedEV → Idle, repeatedly
    cycle = [IDLE, CONNECTED, CHARGING, SUSPENDED]
    assert len(seen) >= 8
    assert seen == [cycle[i % 4] for i in range(len(seen))]
    assert all(b >= a for a, b in itertools.pairwise(energy)), "the meter only grows"
    assert energy[-1] > energy[0]


def test_power_is_consistent_with_voltage_current_and_phases() -> None:
    charger = make_chargers(1, now=T0)[0]  # starts Charging
    charger.advance(T0 + 30)
    body = charger.charging()
    reading = parse_values("charging", body).values
    assert charger.state == CHARGING
    volts, amps = reading["pulsatrix_voltage_volts"], reading["pulsatrix_current_amperes"]
    power = reading["pulsatrix_active_power_watts"]
    assert isinstance(volts, tuple) and isinstance(amps, tuple) and isinstance(power, float)
    estimate = sum(v * a for v, a in zip(volts, amps, strict=True) if v and a)
    assert estimate > 1000
    assert math.isclose(power, estimate * POWER_FACTOR, rel_tol=1e-3)
    assert all(220 < (v or 0) < 240 for v in volts)


def test_grid_frequency_wanders_around_50_hz() -> None:
    charger = make_chargers(1, now=T0)[0]
    values = []
    for i in range(1, 1200):
        charger.advance(T0 + i)
        values.append(charger.frequency)
    assert all(49.9 <= f <= 50.1 for f in values)
    assert max(values) - min(values) > 0.01  # it does move


def test_both_firmware_generations_and_single_phase_chargers() -> None:
    gen1, gen2, single = make_chargers(3, now=T0)
    assert "pdName" in gen1.configuration() and "ctrlrName" in gen1.configuration()
    conf2 = gen2.configuration()
    assert {"powerDomainName", "controllerName", "hasPhaseShutoff", "hasPhaseSTTurnon"} <= conf2.keys()
    assert "effectiveAmperageLimit" in gen2.transaction()
    assert parse_values("configuration", conf2).problems == ()
    assert len(gen2.transaction()["vehicleStatus"]) == 1  # prose-doc form: single letters for the vehicle
    assert len(gen1.transaction()["vehicleStatus"]) == 2
    assert "hasPhaseSTShutoff" in single.configuration()
    assert len(single.charging()["voltage"]) == 1
    assert parse_values("transaction", gen1.transaction()).problems == ()


def test_limits_answer_with_nan_literals_and_expire() -> None:
    charger = make_chargers(1, now=T0)[0]
    assert b"NaN" in charger.limits_body()
    assert decode_body(charger.limits_body())["timeout"] == 300000.0
    assert charger.put_limits({"setAmperageLimit": 10, "setTimeout": 5000}, T0) is None
    charger.advance(T0 + 2)
    assert charger.limits.current == 10.0
    assert charger.transaction()["allocationSourceName"] == "API"
    charger.advance(T0 + 6)
    assert math.isnan(charger.limits.current)


async def test_http_api_auth_faults_and_put_limits(make_fleet: MakeFleet, aiohttp_client: ClientFactory) -> None:
    fleet = await make_fleet(1, auth=SimAuth(bearer="tok"))
    client = await aiohttp_client(fleet.server)
    assert (await client.get("/garage/api/v1/charging")).status == 401
    auth = {"Authorization": "Bearer tok"}
    assert (await client.get("/garage/api/v1/charging", headers=auth)).status == 200
    put = await client.put("/garage/api/v1/limits", data='{"amperageLimit": 12.5, "powerLimit": NaN}', headers=auth)
    assert put.status == 204
    limits = decode_body(await (await client.get("/garage/api/v1/limits", headers=auth)).read())
    assert limits["amperageLimit"] == 12.5
    assert math.isnan(limits["powerLimit"])
    bad = await client.put("/_sim/garage", data=json.dumps({"fault": "gremlins"}), headers=auth)
    assert bad.status == 400
    body = json.dumps({"fault": "http_500", "endpoints": ["limits"]})
    ok = await client.put("/_sim/garage", data=body, headers=auth)
    assert ok.status == 200
    assert (await client.get("/garage/api/v1/limits", headers=auth)).status == 500
    assert (await client.get("/garage/api/v1/charging", headers=auth)).status == 200
    listing = await (await client.get("/_sim", headers=auth)).json()
    assert listing[0]["fault"] == "http_500"


async def test_fault_routes_refuse_requests_without_the_simulators_credentials(
    make_fleet: MakeFleet, aiohttp_client: ClientFactory
) -> None:
    fleet = await make_fleet(1, auth=SimAuth(basic=("sim", "s3cret")))
    client = await aiohttp_client(fleet.server)
    body = json.dumps({"fault": "http_500"})
    for headers in ({}, {"Authorization": "Bearer s3cret"}, {"Authorization": "Basic c2ltOndyb25n"}):  # sim:wrong
        listing = await client.get("/_sim", headers=headers)
        assert (listing.status, await listing.text()) == (401, "unauthorized\n")
        assert (await client.put("/_sim/garage", data=body, headers=headers)).status == 401
    assert fleet.sim.chargers["garage"].fault == "none", "a refused request changes nothing"
    good = {"Authorization": "Basic c2ltOnMzY3JldA=="}  # sim:s3cret
    assert (await client.get("/_sim", headers=good)).status == 200


async def test_without_faults_the_app_is_the_device_api_alone(aiohttp_client: ClientFactory) -> None:
    """What --demo runs: no fault routes, no statistics, nothing kept per connection."""
    app = create_simulator_app(1, seed=7)
    client = await aiohttp_client(app)
    assert (await client.get("/_sim")).status == 404
    assert (await client.put("/_sim/garage", data=json.dumps({"fault": "http_500"}))).status == 404
    assert (await client.get("/garage/api/v1/charging")).status == 200
    assert app[SIMULATOR].stats is None
    set_fault(app[SIMULATOR].chargers["garage"], "http_500")  # only the fault routes' handler obeys it
    assert (await client.get("/garage/api/v1/charging")).status == 200


def test_device_faults_change_what_the_charger_reports() -> None:
    charger = make_chargers(1, now=T0)[0]
    charger.fault = "vehicle_error"
    charger.advance(T0 + 2)
    tx = charger.transaction()
    assert (tx["state"], tx["vehicleStatus"], tx["chargeControllerStatus"]) == ("Faulted", "F1", "F")
    charger.fault = "undervoltage"
    charger.advance(T0 + 4)
    assert all(v < 207 for v in charger.charging()["voltage"])
    charger.fault = "stall"
    charger.advance(T0 + 6)
    assert charger.transaction()["state"] == "Charging"
    assert charger.charging()["lastActivePower"] < 5
    before = charger.energy_kwh
    charger.fault = "meter_reset"
    charger.advance(T0 + 8)
    assert charger.energy_kwh < before
