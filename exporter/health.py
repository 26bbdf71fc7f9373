"""The exporter's long-lived state about its chargers: error counters, last status, and log de-duplication.

Updated once per scrape from the fetch results (outside ``collect()``); rendered by :mod:`exporter.metrics`.
A failing endpoint is logged when it starts failing (or changes reason) and when it recovers, not on every scrape;
a skipped value is logged once per charger, endpoint and field.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from exporter.config import ChargerConfig
from exporter.model import ChargerResult

log = logging.getLogger("exporter.health")


@dataclass(slots=True)
class ChargerStatus:
    up: bool | None = None  # None: not scraped yet
    last_scrape: float | None = None  # Unix time
    last_error: str | None = None  # "endpoint: reason: detail", safe to show
    last_error_time: float | None = None


@dataclass(slots=True)
class ChargerCounters:
    scrapes: float = 0.0  # polls of the charger; with failures, starts at 0 so that increase() sees the first
    failures: float = 0.0  # polls in which at least one endpoint failed
    errors: dict[tuple[str, str], float] = field(default_factory=dict)  # (endpoint, reason) -> count
    invalid_values: dict[tuple[str, str], float] = field(default_factory=dict)  # (endpoint, field) -> count
    last_error: dict[tuple[str, str], float] = field(default_factory=dict)  # (endpoint, reason) -> Unix time


class ExporterHealth:
    def __init__(self, chargers: Sequence[ChargerConfig]) -> None:
        self.chargers = {c.name: c for c in chargers}
        # Error series exist per (endpoint, reason) that occurred; scrapes and failures start at 0 for increase().
        self.counters = {c.name: ChargerCounters() for c in chargers}
        self.status = {c.name: ChargerStatus() for c in chargers}
        self._failing: dict[tuple[str, str], str] = {}  # (charger, endpoint) -> reason currently failing
        self._logged_values: set[tuple[str, str, str]] = set()

    def record(self, results: Iterable[ChargerResult], now: float | None = None) -> None:
        now = time.time() if now is None else now
        for result in results:
            self._record_one(result, now)

    def _record_one(self, result: ChargerResult, now: float) -> None:
        name = result.charger.name
        counters = self.counters[name]
        status = self.status[name]
        status.up = result.up
        status.last_scrape = now
        counters.scrapes += 1
        if not result.up:
            counters.failures += 1
        for endpoint, outcome in result.endpoints.items():
            key = (name, endpoint)
            if outcome.reason is not None:
                counters.errors[(endpoint, outcome.reason)] = counters.errors.get((endpoint, outcome.reason), 0) + 1
                counters.last_error[(endpoint, outcome.reason)] = now
                status.last_error = f"{endpoint}: {outcome.reason}: {outcome.detail}"
                status.last_error_time = now
                if self._failing.get(key) != outcome.reason:
                    log.warning("charger %s: %s failed (%s): %s", name, endpoint, outcome.reason, outcome.detail)
                    self._failing[key] = outcome.reason
                continue
            if key in self._failing:
                del self._failing[key]
                log.info("charger %s: %s answers again", name, endpoint)
            problems = outcome.parsed.problems if outcome.parsed is not None else ()
            for problem in problems:
                vkey = (endpoint, problem.field)
                counters.invalid_values[vkey] = counters.invalid_values.get(vkey, 0) + 1
                if (name, endpoint, problem.field) not in self._logged_values:
                    self._logged_values.add((name, endpoint, problem.field))
                    log.warning(
                        "charger %s: %s.%s skipped: %s (logged once; counted in pulsatrix_invalid_values_total)",
                        name,
                        endpoint,
                        problem.field,
                        problem.message,
                    )
