"""Re-read the config file (and the secret files it names) while the exporter runs: ``SIGHUP`` and ``POST /-/reload``.

A valid file takes effect from the next scrape on (:meth:`exporter.poll.Fleet.apply`; scrapes in flight finish
with the chargers they started with). An invalid one is rejected with its problems logged, and the running config
stays. A reload that applies logs and answers what it changed (:func:`describe_changes`: chargers added, removed
and changed by name and key, settings old -> new; never a value of a charger's settings).
``pulsatrix_exporter_config_last_reload_successful`` and
``pulsatrix_exporter_config_last_reload_success_timestamp_seconds`` say how the last attempt went, as Prometheus'
own metrics of the same name do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path

from exporter.config import Config, ConfigError, load_config
from exporter.metrics import Family, reload_families
from exporter.poll import Fleet

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
    def __init__(self, path: Path | None, fleet: Fleet) -> None:
        self.path = path
        self.fleet = fleet
        self.successful = True  # the config the exporter started with was valid, or it would not have started
        self.success_time = time.time()
        self._lock = asyncio.Lock()
        # Called after each config reload, applied or not (the command line's web config re-read): a line each.
        self.also: list[Callable[[], str]] = []

    def __repr__(self) -> str:
        return f"Reloader({str(self.path) if self.path else None!r})"

    async def reload(self, executor: Executor | None) -> tuple[bool, str]:
        """Re-read the file (and what ``also`` re-reads); return (applied, a summary or every problem found)."""
        ok, message = await self._reload_config(executor)
        for extra in self.also:
            try:
                message += "\n" + extra()
            except Exception:  # a bug there must not fail the config reload
                log.exception("reload: %r failed", extra)
        return ok, message

    async def _reload_config(self, executor: Executor | None) -> tuple[bool, str]:
        """Re-read the file; return (applied, a one-line summary or every problem found). Never raises."""
        if self.path is None:
            return False, "nothing to reload: the exporter runs without a config file (demo or in-memory config)"
        async with self._lock:  # two reloads at once would apply in either order
            loop = asyncio.get_running_loop()
            try:
                config: Config = await loop.run_in_executor(executor, load_config, self.path)
            except ConfigError as exc:
                self.successful = False
                # One log line (a journal or a log shipper keeps it together), every problem in it.
                log.error(
                    "config reload rejected, the running config stays: %s: %s",
                    exc.source,
                    "; ".join(exc.problems),
                )
                return False, exc.render()
            except Exception as exc:  # a bug while reading: say so, keep running
                self.successful = False
                log.exception("config reload failed, the running config stays")
                return False, f"exporter error while reading {self.path}: {type(exc).__name__}"
            changes = describe_changes(self.fleet.config, config)
            try:
                self.fleet.apply(config)
            except Exception as exc:
                self.successful = False
                log.exception("config reload failed, the running config stays")
                return False, f"exporter error while applying {self.path}: {type(exc).__name__}"
            self.successful = True
            self.success_time = time.time()
            log.info("config reloaded: %s; %s", config.summary(), changes)
            return True, f"{config.summary()}; {changes}"

    def families(self) -> list[Family]:
        """``pulsatrix_exporter_config_last_reload_successful`` and its success timestamp, as they are now."""
        return reload_families(self.successful, self.success_time)
