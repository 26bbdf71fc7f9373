"""Re-read the config file (and the secret files it names) while the exporter runs: ``SIGHUP`` and ``POST /-/reload``.

A valid file takes effect from the next scrape on (:meth:`exporter.poll.Fleet.apply`; scrapes in flight finish
with the chargers they started with). An invalid one is rejected with its problems logged, and the running config
stays. ``pulsatrix_exporter_config_last_reload_successful`` and
``pulsatrix_exporter_config_last_reload_success_timestamp_seconds`` say how the last attempt went, as Prometheus'
own metrics of the same name do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor
from pathlib import Path

from exporter.config import Config, ConfigError, load_config
from exporter.metrics import Family, reload_families
from exporter.poll import Fleet

log = logging.getLogger("exporter.reload")


class Reloader:
    def __init__(self, path: Path | None, fleet: Fleet) -> None:
        self.path = path
        self.fleet = fleet
        self.successful = True  # the config the exporter started with was valid, or it would not have started
        self.success_time = time.time()
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"Reloader({str(self.path) if self.path else None!r})"

    async def reload(self, executor: Executor | None) -> tuple[bool, str]:
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
            try:
                self.fleet.apply(config)
            except Exception as exc:
                self.successful = False
                log.exception("config reload failed, the running config stays")
                return False, f"exporter error while applying {self.path}: {type(exc).__name__}"
            self.successful = True
            self.success_time = time.time()
            log.info("config reloaded: %s", config.summary())
            return True, config.summary()

    def families(self) -> list[Family]:
        """``pulsatrix_exporter_config_last_reload_successful`` and its success timestamp, as they are now."""
        return reload_families(self.successful, self.success_time)
