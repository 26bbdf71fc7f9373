"""A simulator of pulsatrix charging controllers: the full local REST API for N chargers on one port.

Each charger lives under ``/<name>/api/v1/{configuration,transaction,charging,limits}``, so its base URL for the
exporter is ``http://HOST:PORT/<name>``. The parts:

* :mod:`~exporter.simulator.device`: the device model (sessions, grid, meter, limits, firmware generations, device
  faults) and the JSON bodies it serves;
* :mod:`~exporter.simulator.api`: the device API routes and the simulator's own basic/bearer auth, which every route
  honours;
* :mod:`~exporter.simulator.faults`: transport faults and the ``/_sim`` routes that set them;
* :mod:`~exporter.simulator.stats`: requests, requests in flight and client connections, counted for the tests;
* :mod:`~exporter.simulator.script`: scripted sessions (``simulate --script``), the sped-up clock, the session log;
* :mod:`~exporter.simulator.server`: the app factory and an in-process runner.

Faults and statistics are mounted only with ``faults=True`` (``simulate --faults`` and the tests); ``--demo`` runs the
device model behind the device API alone.
"""

from exporter.simulator.api import SIMULATOR, SimAuth, Simulator
from exporter.simulator.device import (
    CHARGING,
    CONNECTED,
    DEMO_NAMES,
    DEVICE_FAULTS,
    ENDPOINTS,
    IDLE,
    POWER_FACTOR,
    SITE_CAPACITY_W,
    SITES,
    SUSPENDED,
    SimCharger,
    SimLimits,
    SiteLoadManager,
    make_chargers,
    site_of,
)
from exporter.simulator.faults import FAULTS, TRANSPORT_FAULTS, set_fault
from exporter.simulator.script import Script, ScriptedCharger, ScriptedSession, ScriptError, load_script, parse_script
from exporter.simulator.server import (
    SIM_BACKLOG,
    base_url,
    config_snippet,
    create_simulator_app,
    start_simulator,
)
from exporter.simulator.stats import SimStats

__all__ = [
    "CHARGING",
    "CONNECTED",
    "DEMO_NAMES",
    "DEVICE_FAULTS",
    "ENDPOINTS",
    "FAULTS",
    "IDLE",
    "POWER_FACTOR",
    "SIMULATOR",
    "SIM_BACKLOG",
    "SITES",
    "SITE_CAPACITY_W",
    "SUSPENDED",
    "TRANSPORT_FAULTS",
    "Script",
    "ScriptError",
    "ScriptedCharger",
    "ScriptedSession",
    "SimAuth",
    "SimCharger",
    "SimLimits",
    "SimStats",
    "Simulator",
    "SiteLoadManager",
    "base_url",
    "config_snippet",
    "create_simulator_app",
    "load_script",
    "make_chargers",
    "parse_script",
    "set_fault",
    "site_of",
    "start_simulator",
]
