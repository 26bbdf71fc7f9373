"""Re-read the config file (and the secret files it names) while the exporter runs: ``SIGHUP`` and ``POST /-/reload``.

A valid file takes effect from the next scrape on (:meth:`exporter.scrape.poll.Fleet.apply`; scrapes in flight finish
with the chargers they started with). An invalid one is rejected with its problems logged, and the running config
stays. A reload that applies logs and answers what it changed (:func:`describe_changes`: chargers added, removed
and changed by name and key, settings old -> new; never a value of a charger's settings).
``pulsatrix_exporter_config_last_reload_successful`` and
``pulsatrix_exporter_config_last_reload_success_timestamp_seconds`` say how the last attempt went, as Prometheus'
own metrics of the same name do.

Requests coalesce (a flood of ``POST /-/reload`` or SIGHUPs): at most one reload runs and at most one more waits
behind it. A request that arrives while a reload runs is served by the next one, which starts after it and reads
the file as it is then, so it covers every request that came in meanwhile; a request that arrives while that next
one still waits joins it. Twenty concurrent POSTs cost at most two reloads, not twenty (a reload of thousands of
chargers costs seconds of CPU: docs/benchmark/config_load.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from pathlib import Path

from exporter.config import Config, ConfigError, load_config
from exporter.scrape.families import Family, reload_families
from exporter.scrape.poll import Fleet

log = logging.getLogger("exporter.reload")

# The settings of a charger compared on reload, by the key the config file names them with (never their values:
# url may carry a token in its query, auth holds secrets).
CHARGER_KEYS = ("url", "timeout", "labels", "auth", "tls", "min_interval")
# The top-level settings; their values are numbers, safe to show.
SETTINGS = ("timeout", "min_interval", "max_concurrency", "keepalive_timeout")
MAX_NAMED = 20  # chargers named per list (added, removed, changed); the rest are counted


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMED])
    return shown + (f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else "")


def _value(value: object) -> str:
    if value is None:
        return "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def describe_changes(old: Config, new: Config) -> str:
    """What a reload from ``old`` to ``new`` changes, in one line: chargers added, removed and changed (by name;
    "changed" lists the keys that differ, never a value) and the top-level settings (old -> new)."""
    before = {c.name: c for c in old.chargers}
    after = {c.name: c for c in new.chargers}
    parts = []
    added = [name for name in after if name not in before]
    removed = [name for name in before if name not in after]
    changed = []
    for name, charger in after.items():
        was = before.get(name)
        if was is None or was == charger:
            continue
        keys = [key for key in CHARGER_KEYS if getattr(was, key) != getattr(charger, key)]
        changed.append(f"{name} ({', '.join(keys)})")
    if added:
        parts.append(f"added {len(added)}: {_names(added)}")
    if removed:
        parts.append(f"removed {len(removed)}: {_names(removed)}")
    if changed:
        parts.append(f"changed {len(changed)}: {_names(changed)}")
    settings = [
        f"{key} {_value(getattr(old, key))} -> {_value(getattr(new, key))}"
        for key in SETTINGS
        if getattr(old, key) != getattr(new, key)
    ]
    if settings:
        parts.append(f"settings: {', '.join(settings)}")
    return "; ".join(parts) if parts else "no changes"


class Reloader:
    """Re-reads ``path`` into ``fleet``, then runs each of ``also`` (the web config's re-read: a line each), one
    reload at a time."""

    def __init__(self, path: Path | None, fleet: Fleet, also: Sequence[Callable[[], str]] = ()) -> None:
        self.path = path
        self.fleet = fleet
        self.successful = True  # the config the exporter started with was valid, or it would not have started
        self.success_time = time.time()
        self._running: asyncio.Task[tuple[bool, str]] | None = None  # the reload reading or applying now
        self._queued: asyncio.Task[tuple[bool, str]] | None = None  # the one that starts when it ends
        self.runs = 0  # reloads actually run (for tests and curiosity)
        # Called after each config reload, applied or not (the web config's re-read): a line each.
        self.also = tuple(also)

    def __repr__(self) -> str:
        return f"Reloader({str(self.path) if self.path else None!r})"

    async def reload(self, executor: Executor | None) -> tuple[bool, str]:
        """Re-read the file, or join a reload that will read it after now; return (applied, a one-line summary or
        every problem found). Never raises; a caller that goes away does not cancel the reload others wait for."""
        if self.path is None:
            return False, "nothing to reload: the exporter runs without a config file (demo or in-memory config)"
        return await asyncio.shield(self._schedule(self.path, executor))

    def _schedule(self, path: Path, executor: Executor | None) -> asyncio.Task[tuple[bool, str]]:
        if self._queued is not None:  # not started yet: it reads the file after this request came in
            return self._queued
        running = self._running
        if running is None or running.done():
            self._running = asyncio.create_task(self._reload_now(path, executor), name="config reload")
            return self._running
        # One is running: it may have read the file before this request's change, so one more runs after it.
        self._queued = asyncio.create_task(self._after(running, path, executor), name="config reload (queued)")
        return self._queued

    async def _after(
        self, previous: asyncio.Task[tuple[bool, str]], path: Path, executor: Executor | None
    ) -> tuple[bool, str]:
        await asyncio.wait([previous])
        # From here on this reload is the running one: a request arriving now needs one more after it.
        self._running, self._queued = self._queued, None
        return await self._reload_now(path, executor)

    @property
    def busy(self) -> bool:
        """A reload is running or waiting."""
        return any(task is not None and not task.done() for task in (self._running, self._queued))

    def cancel(self) -> None:
        """Shutting down: stop the reloads running or waiting."""
        for task in (self._running, self._queued):
            if task is not None:
                task.cancel()

    async def _reload_now(self, path: Path, executor: Executor | None) -> tuple[bool, str]:
        """One reload: the config file, then what ``also`` re-reads (a line each)."""
        self.runs += 1
        ok, message = await self._reload_config(path, executor)
        for extra in self.also:
            try:
                message += "\n" + extra()
            except Exception:  # a bug there must not fail the config reload
                log.exception("reload: %r failed", extra)
        return ok, message

    async def _reload_config(self, path: Path, executor: Executor | None) -> tuple[bool, str]:
        loop = asyncio.get_running_loop()
        try:
            config: Config = await loop.run_in_executor(executor, load_config, path)
        except ConfigError as exc:
            self.successful = False
            # One log line (a journal or a log shipper keeps it together), every problem in it.
            log.error(
                "config reload rejected, the running config stays: %s: %s",
                exc.source,
                "; ".join(exc.problems),
            )
            return False, exc.message()
        except Exception as exc:  # a bug while reading: say so, keep running
            self.successful = False
            log.exception("config reload failed, the running config stays")
            return False, f"exporter error while reading {path}: {type(exc).__name__}"
        changes = describe_changes(self.fleet.config, config)
        try:
            self.fleet.apply(config)
        except Exception as exc:
            self.successful = False
            log.exception("config reload failed, the running config stays")
            return False, f"exporter error while applying {path}: {type(exc).__name__}"
        self.successful = True
        self.success_time = time.time()
        log.info("config reloaded: %s; %s", config.summary(), changes)
        return True, f"{config.summary()}; {changes}"

    def families(self) -> list[Family]:
        """``pulsatrix_exporter_config_last_reload_successful`` and its success timestamp, as they are now."""
        return reload_families(self.successful, self.success_time)
