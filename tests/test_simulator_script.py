"""Scripted sessions (simulate --script): served through the device API exactly as a real charger serves a session,
and logged as the ground truth an energy report is checked against."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from exporter.simulator import SIMULATOR, create_simulator_app, start_simulator
from exporter.simulator.script import ScriptError, SimClock, load_script, parse_script
from tests.support.fleet import ClientFactory
from tests.support.servers import free_port

T0 = 1_800_000_000.25  # the clock at start; the schedule counts from the next whole second
ORIGIN = 1_800_000_001
SCRIPT = """
chargers:
  - name: home
    meter_start_kwh: 1200.0
    sessions:
      - {after: 5, duration: 20, power: 11000}
      - {after: 10, duration: 40, power: 3700}
  - name: work
    sessions:
      - {after: 30, duration: 60, power: 7400}
"""


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _get(client: Any, path: str) -> dict[str, Any]:
    response = await client.get(path)
    assert response.status == 200
    body: dict[str, Any] = await response.json()
    return body


async def test_a_scripted_session_is_served_as_a_device_serves_it(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    clock = Clock(T0)
    app = create_simulator_app(script=parse_script(SCRIPT), clock=clock, session_log=tmp_path / "sessions.jsonl")
    client = await aiohttp_client(app)

    async def at(t: float) -> tuple[dict[str, Any], dict[str, Any]]:
        clock.now = t
        return await _get(client, "/home/api/v1/transaction"), await _get(client, "/home/api/v1/charging")

    tx, ch = await at(ORIGIN + 4.5)  # before the first session
    assert (tx["state"], tx["startedTime"], tx["endedTime"], tx["meterStart"], tx["meterStop"]) == ("Idle", 0, 0, 0, 0)
    assert (ch["energyImported"], ch["lastActivePower"], ch["amperage"]) == (1200.0, 0.0, [0.0, 0.0, 0.0])

    tx, ch = await at(ORIGIN + 15)  # 10 s into the first session
    assert tx["state"] == "Charging" and tx["vehicleStatus"] == "C2" and tx["chargeControllerStatus"] == "C"
    assert (tx["startedTime"], tx["endedTime"], tx["meterStart"], tx["meterStop"]) == (ORIGIN + 5, 0, 1200.0, 0.0)
    assert ch["lastActivePower"] == 11000.0
    assert ch["energyImported"] == round(1200 + 11000 * 10 / 3_600_000, 6) == 1200.030556
    assert all(16.0 < a < 16.2 for a in ch["amperage"])  # 11 kW over 3 phases at ~230 V, cos φ 0.99
    assert ch["commandedAmperage"] >= max(ch["amperage"])
    _, later = await at(ORIGIN + 20)
    assert later["energyImported"] == 1200.045833  # rising with the power: 11 kW × 15 s

    tx, ch = await at(ORIGIN + 30)  # the first session over, the second not begun
    assert (tx["state"], tx["startedTime"], tx["endedTime"]) == ("Idle", ORIGIN + 5, ORIGIN + 25)
    assert (tx["meterStart"], tx["meterStop"]) == (1200.0, 1200.061111)  # 11 kW × 20 s = 0.061111 kWh
    assert (ch["energyImported"], ch["lastActivePower"]) == (1200.061111, 0.0)

    tx, ch = await at(ORIGIN + 55)  # 20 s into the second session
    assert (tx["state"], tx["startedTime"], tx["endedTime"], tx["meterStart"]) == (
        "Charging",
        ORIGIN + 35,
        0,
        1200.061111,
    )
    assert (ch["energyImported"], ch["lastActivePower"]) == (1200.081667, 3700.0)

    tx, ch = await at(ORIGIN + 10_000)  # after the last session it stays idle
    assert (tx["state"], tx["startedTime"], tx["endedTime"]) == ("Idle", ORIGIN + 35, ORIGIN + 75)
    assert tx["meterStop"] == ch["energyImported"] == 1200.102222  # + 3.7 kW × 40 s
    assert [c.name for c in app[SIMULATOR].chargers.values()] == ["home", "work"]


async def test_the_session_log_says_what_was_served(aiohttp_client: ClientFactory, tmp_path: Path) -> None:
    log = tmp_path / "sessions.jsonl"
    clock = Clock(T0)
    client = await aiohttp_client(create_simulator_app(script=parse_script(SCRIPT), clock=clock, session_log=log))
    clock.now = ORIGIN + 32  # home's first session over, work's running
    await _get(client, "/home/api/v1/transaction")
    assert log.read_text().splitlines() == [
        f'{{"event": "start", "charger": "home", "start": {ORIGIN + 5}.0, "meter_start_kwh": 1200.0}}',
        f'{{"event": "stop", "charger": "home", "start": {ORIGIN + 5}.0, "end": {ORIGIN + 25}.0, '
        '"meter_start_kwh": 1200.0, "meter_stop_kwh": 1200.061111, "energy_kwh": 0.061111}',
        f'{{"event": "start", "charger": "work", "start": {ORIGIN + 30}.0, "meter_start_kwh": 0.0}}',
    ]
    clock.now = ORIGIN + 3600
    served = await _get(client, "/work/api/v1/transaction")
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["event"], e["charger"]) for e in lines] == [
        ("start", "home"), ("stop", "home"), ("start", "work"), ("start", "home"), ("stop", "home"), ("stop", "work")
    ]  # fmt: skip
    work_stop = lines[-1]
    assert (work_stop["start"], work_stop["end"]) == (served["startedTime"], served["endedTime"])
    assert (work_stop["meter_start_kwh"], work_stop["meter_stop_kwh"]) == (served["meterStart"], served["meterStop"])
    assert work_stop["energy_kwh"] == 0.123333  # 7.4 kW × 60 s


async def test_in_process_the_log_is_written_as_sessions_happen_with_nobody_polling(tmp_path: Path) -> None:
    log = tmp_path / "sessions.jsonl"
    script = parse_script("chargers: [{name: home, sessions: [{after: 2, duration: 10, power: 3600}]}]")
    runner, url, names = await start_simulator("127.0.0.1", 0, script=script, session_log=log, speed=50.0)
    try:
        assert names == ["home"] and url.startswith("http://127.0.0.1:")
        for _ in range(200):  # 12 simulated seconds take 0.24 s at 50 x; wait at most 10 s
            if len(log.read_text().splitlines()) == 2:
                break
            await asyncio.sleep(0.05)
        start, stop = (json.loads(line) for line in log.read_text().splitlines())
        assert (start["event"], stop["event"], stop["end"] - stop["start"], stop["energy_kwh"]) == (
            "start", "stop", 10.0, 0.01
        )  # fmt: skip
    finally:
        await runner.cleanup()


def test_the_simulated_clock_runs_speed_times_as_fast() -> None:
    real = Clock(T0)
    clock = SimClock(30.0, real=real)
    assert clock() == T0
    real.now = T0 + 2
    assert clock() == T0 + 60


def test_a_bad_script_names_the_file_the_key_and_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(
        "chargers:\n"
        "  - name: home\n"
        "    sessions:\n"
        "      - {after: 5, duration: 0, power: 11000}\n"
        "      - {after: -1, duration: 20, power: fast, phases: 3}\n"
        "  - name: home\n"
        "    meter_start_kwh: true\n"
        "  - {sessions: []}\n"
    )
    with pytest.raises(ScriptError) as info:
        load_script(path)
    assert info.value.message().splitlines() == [
        f"{path}: 7 problems in session script",
        f"  {path}: chargers[0].sessions[0].duration: must be above 0 and at most 315360000, got 0",
        f"  {path}: chargers[0].sessions[1].phases: unknown key (expected after, duration, power)",
        f"  {path}: chargers[0].sessions[1].after: must be at least 0 and at most 315360000, got -1",
        f"  {path}: chargers[0].sessions[1].power: must be a number, got 'fast'",
        f"  {path}: chargers[1].meter_start_kwh: must be a number, got True",
        f"  {path}: chargers[2].name: must be 1-63 letters, digits, '.', '_' or '-' (it is the URL path), got None",
        f"  {path}: chargers[1].name: 'home' is used by an earlier charger",
    ]
    with pytest.raises(ScriptError) as info:
        parse_script("chargers: [{name: home, sessions: [{after: 1, duration: 2, power: 3}", "broken.yml")
    assert str(info.value).startswith("broken.yml: 1 problem in session script\n  broken.yml: line 1: not valid YAML")


def _simulate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", "simulate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": os.environ.get("PATH", "/usr/bin"), "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
    )


def test_the_command_line_refuses_a_bad_script_and_contradicting_flags(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("chargers: []\n")
    proc = _simulate("--script", str(bad))
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == (
        f"{bad}: 1 problem in session script\n"
        f"  {bad}: chargers: must be a non-empty list of chargers (name, sessions)\n"
    )
    missing = _simulate("--script", str(tmp_path / "none.yml"))
    assert missing.returncode == 1
    assert missing.stderr.endswith(f"{tmp_path / 'none.yml'}: cannot read session script: No such file or directory\n")
    both = _simulate("--script", str(bad), "--chargers", "2")
    assert both.returncode == 2
    assert both.stderr.endswith(
        "error: simulate: --chargers and --script both say which chargers to serve; use one or the other\n"
    )
    no_script = _simulate("--session-log", str(tmp_path / "log"))
    assert no_script.returncode == 2
    assert no_script.stderr.endswith("error: simulate: --session-log logs scripted sessions and needs --script FILE\n")


def test_simulate_script_serves_and_logs_sessions_sped_up(tmp_path: Path) -> None:
    script, log = tmp_path / "script.yml", tmp_path / "sessions.jsonl"
    script.write_text("chargers:\n  - name: home\n    sessions:\n      - {after: 10, duration: 30, power: 7200}\n")
    port = free_port()
    command = [sys.executable, "-m", "exporter", "simulate", "--script", str(script), "--session-log", str(log)]
    proc = subprocess.Popen(
        [*command, "--speed", "40", "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20  # 40 s of simulated time take 1 s at 40 x
        while len(log.read_text().splitlines() if log.exists() else []) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.05)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/home/api/v1/transaction", timeout=5) as response:
            served = json.loads(response.read())
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    start, stop = (json.loads(line) for line in log.read_text().splitlines())
    assert start["event"] == "start" and stop["event"] == "stop"
    assert stop["end"] - stop["start"] == 30.0  # simulated seconds
    assert (stop["start"], stop["end"], stop["meter_stop_kwh"]) == (
        served["startedTime"], served["endedTime"], served["meterStop"]
    )  # fmt: skip
    assert stop["energy_kwh"] == 0.06  # 7.2 kW × 30 s
    url = f"http://127.0.0.1:{port}"
    listening = f"# simulate: 1 charger(s) listening on {url} (device API at {url}/<name>/api/v1/...)\n"
    assert f"{listening}chargers:\n  - name: home\n    url: {url}/home\n" == out
    assert "simulate: 1 scripted session(s) on 1 charger(s), simulated clock at 40 x real time" in err
