"""A simulator app: the device API of N chargers on one port, and (for tests, ``simulate --faults``) the fault
routes and request statistics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from exporter.simulator.api import SIMULATOR, SimAuth, Simulator, add_device_routes, require_auth
from exporter.simulator.device import SimCharger, SiteLoadManager, make_chargers
from exporter.simulator.faults import add_fault_routes
from exporter.simulator.script import Script, ScriptRun, SimClock, load_script, start_run
from exporter.simulator.stats import SimStats, mount_stats

# An exporter opens 4 connections per charger at once; a simulator of many chargers needs a deep accept queue.
SIM_BACKLOG: Final = 4096


def base_url(host: str, port: int) -> str:
    """``http://HOST:PORT``, with an IPv6 literal in brackets (``http://[::1]:8080``); a wildcard address is shown
    as the loopback address of its family, which is where a client on this machine reaches it."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def config_snippet(
    names: Sequence[str], url: str, *, basic: tuple[str, str] | None = None, bearer_env: str | None = None
) -> str:
    """What ``simulate`` prints: where it listens (a YAML comment) and a config for the exporter, ``chargers:``
    header and auth included, pasteable as it is. A secret is written as the ``${ENV}`` the simulator read it from
    (``basic`` is (user, env var)), which the exporter's config expands: the secret itself is never printed."""
    lines = [f"# simulate: {len(names)} charger(s) listening on {url} (device API at {url}/<name>/api/v1/...)"]
    lines.append("chargers:")
    for name in names:
        lines += [f"  - name: {name}", f"    url: {url}/{name}"]
        if basic is not None:
            user, env = basic
            lines += ["    auth:", "      basic:", f"        username: {json.dumps(user)}"]
            lines.append(f"        password: {json.dumps('${' + env + '}')}")
        elif bearer_env is not None:
            lines += ["    auth:", "      bearer:", f"        token: {json.dumps('${' + bearer_env + '}')}"]
    return "\n".join(lines)


async def _on_shutdown(app: web.Application) -> None:
    app[SIMULATOR].stopping.set()


async def _drive_script(app: web.Application) -> AsyncIterator[None]:
    """Advance the scripted chargers when a session is due to start or stop, so that the session log is written
    as it happens whether or not anyone polls; close the log when the app stops."""
    sim = app[SIMULATOR]
    run = sim.script
    assert run is not None  # noqa: S101 - only mounted with a script
    speed = getattr(sim.clock, "speed", 1.0)

    async def drive() -> None:
        while True:
            now = sim.clock()
            run.advance(now)
            # Wake at the next event, but at least once a second of real time: a clock that is not a SimClock (a
            # test's) may run at any pace. A log line is at most that late; what it says comes from the script.
            await asyncio.sleep(min(1.0, max(0.005, (run.next_event() - now) / speed)))

    task = asyncio.create_task(drive())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if run.log is not None:
            run.advance(sim.clock())  # what is due by now is logged before the log closes
            run.log.close()


def create_simulator_app(
    n: int = 3,
    *,
    speed: float = 1.0,
    seed: int = 1,
    auth: SimAuth | None = None,
    clock: Callable[[], float] | None = None,
    chargers: Sequence[SimCharger] | None = None,
    faults: bool = False,
    script: Script | str | Path | None = None,
    session_log: str | Path | None = None,
) -> web.Application:
    """N generated chargers (or ``chargers``, or the chargers of ``script``) behind the device API and the
    simulator's auth.

    ``faults=True`` (tests, ``simulate --faults``) adds the fault routes and counts every request
    (:attr:`Simulator.stats`); without it (``--demo``) the app is the device API alone.

    ``script`` (a :class:`~exporter.simulator.script.Script` or the path of a script file, which raises
    :class:`~exporter.simulator.script.ScriptError`) serves only the scripted chargers; the clock then runs ``speed``
    times as fast as real time (unless ``clock`` is given) and every session start and stop is appended to
    ``session_log`` (JSON lines) as it happens. Without a script, ``speed`` divides the generated session durations.
    """
    app = web.Application(middlewares=[require_auth])
    run: ScriptRun | None = None
    if script is not None:
        if chargers is not None:
            raise ValueError("script and chargers are two ways to say which chargers to serve; pass one")
        parsed = script if isinstance(script, Script) else load_script(script)
        clock = clock or SimClock(speed)
        run = start_run(parsed, clock(), seed=seed, session_log=session_log)
        sims: list[SimCharger] = list(run.chargers)
        app.cleanup_ctx.append(_drive_script)
    elif session_log is not None:
        raise ValueError("session_log needs a script: only scripted sessions are logged")
    else:
        clock = clock or time.time
        sims = list(chargers) if chargers is not None else make_chargers(n, speed=speed, seed=seed, now=clock())
    stats = SimStats() if faults else None
    load = SiteLoadManager(sims) if script is None and chargers is None else None
    sim = app[SIMULATOR] = Simulator(
        chargers={c.name: c for c in sims}, auth=auth or SimAuth(), clock=clock, load=load, script=run, stats=stats
    )
    if stats is not None:
        mount_stats(app, stats, sim.chargers)
        add_fault_routes(app)
    else:
        add_device_routes(app)
    app.on_shutdown.append(_on_shutdown)
    return app


async def start_simulator(
    host: str = "127.0.0.1", port: int = 0, **kwargs: Any
) -> tuple[web.AppRunner, str, list[str]]:
    """Start a simulator (``kwargs`` as :func:`create_simulator_app`) on its own runner; return the runner, its base
    URL and the charger names."""
    app = create_simulator_app(**kwargs)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=SIM_BACKLOG)
    await site.start()
    bound_port = runner.addresses[0][1] if runner.addresses else port
    return runner, base_url(host, bound_port), list(app[SIMULATOR].chargers)
