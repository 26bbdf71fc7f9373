"""The exporter's long-lived state about its chargers: error counters, last status, and log de-duplication.

Updated once per poll of a charger, when the poll completes (:mod:`exporter.scrape.poll` calls
:meth:`ExporterHealth.record` exactly once per poll: a reading served again from the cache or shared by concurrent
scrapes is never counted or logged twice); :mod:`exporter.scrape.families` builds families from it. A failing charger is
logged in one line when it starts failing (or fails differently) and once when it recovers, not on every scrape; a
skipped value is logged once per charger, endpoint and field; an exporter bug once per charger and kind
(:mod:`exporter.scrape.logonce`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from exporter.catalogue import INVALID_VALUES
from exporter.config import ChargerConfig
from exporter.scrape.logonce import OncePerKind
from exporter.scrape.results import ChargerResult, Reason

log = logging.getLogger("exporter.health")

FDS_LOG_INTERVAL = 60.0


@dataclass(slots=True)
class ChargerStatus:
    up: bool | None = None  # None: not polled yet
    last_poll: float | None = None  # Unix time
    last_error: str | None = None  # "endpoint: reason: detail", safe to show
    last_error_time: float | None = None
    # The last poll's failures, endpoint -> "reason: detail" (safe to show), and how many endpoints answered in it:
    # the status page tells Partial (some answered) from Down (none did) with them, as the dashboards do.
    failing: dict[str, str] = field(default_factory=dict)
    answered: int = 0


@dataclass(slots=True)
class ChargerCounters:
    polls: float = 0.0  # polls of the charger; with failures, starts at 0 so that increase() sees the first
    failures: float = 0.0  # polls in which at least one endpoint failed
    errors: dict[tuple[str, str], float] = field(default_factory=dict)  # (endpoint, reason) -> count
    invalid_values: dict[tuple[str, str], float] = field(default_factory=dict)  # (endpoint, field) -> count
    last_error: dict[tuple[str, str], float] = field(default_factory=dict)  # (endpoint, reason) -> Unix time


class ExporterHealth:
    def __init__(self, chargers: Sequence[ChargerConfig]) -> None:
        self.chargers = {c.name: c for c in chargers}
        # Error series exist per (endpoint, reason) that occurred; polls and failures start at 0 for increase().
        self.counters = {c.name: ChargerCounters() for c in chargers}
        self.status = {c.name: ChargerStatus() for c in chargers}
        self.generation = 0  # changes with every status change: the status page rendered for it is still true
        self._failing: dict[str, frozenset[tuple[str, str]]] = {}  # charger -> (endpoint, reason) failing now
        self._logged_values: set[tuple[str, str, str]] = set()
        self._bugs = OncePerKind(log)
        self._fds_logged_at = -math.inf  # monotonic time of the last "out of file descriptors" line
        self._fds_polls = 0  # polls failed with exporter_fds since then
        self.clock = time.monotonic

    def apply(self, chargers: Sequence[ChargerConfig]) -> None:
        """A reloaded config: keep the state of chargers that stay, start new ones at 0, forget removed ones."""
        names = {c.name for c in chargers}
        for name in [n for n in self.chargers if n not in names]:
            del self.counters[name], self.status[name]
            self._failing.pop(name, None)
            self._logged_values = {key for key in self._logged_values if key[0] != name}
            self._bugs.forget(name)
        for charger in chargers:
            if charger.name not in self.counters:
                self.counters[charger.name] = ChargerCounters()
                self.status[charger.name] = ChargerStatus()
        self.chargers = {c.name: c for c in chargers}
        self.generation += 1

    def tracks(self, name: str) -> bool:
        """Whether charger ``name`` is configured (a reload may have removed it since a poll began)."""
        return name in self.counters

    def statuses(self) -> Mapping[str, ChargerStatus]:
        """Each configured charger's last status, by name."""
        return self.status

    def record(self, results: Iterable[ChargerResult], now: float | None = None) -> None:
        """Count one completed poll per result; call it once per poll, never for a reading served again."""
        now = time.time() if now is None else now
        self.generation += 1
        for result in results:
            if result.charger.name in self.counters:  # else removed by a reload while it was being polled
                self._record_one(result, now)

    def _record_one(self, result: ChargerResult, now: float) -> None:
        name = result.charger.name
        counters = self.counters[name]
        status = self.status[name]
        outcomes = result.endpoints
        status.answered = sum([outcome.ok for outcome in outcomes.values()])
        up = status.answered == len(outcomes)  # result.up (every endpoint answered), from the count just taken
        status.up = up
        status.last_poll = now
        status.failing = {ep: f"{o.reason}: {o.detail}" for ep, o in outcomes.items() if o.reason is not None}
        if status.failing or name in self._failing:  # else neither failing nor recovering: nothing to log
            self._log_transition(name, result)
        counters.polls += 1
        if not up:
            counters.failures += 1
        for endpoint, outcome in outcomes.items():
            if outcome.reason is not None:
                counters.errors[(endpoint, outcome.reason)] = counters.errors.get((endpoint, outcome.reason), 0) + 1
                counters.last_error[(endpoint, outcome.reason)] = now
                status.last_error = f"{endpoint}: {outcome.reason}: {outcome.detail}"
                status.last_error_time = now
                continue
            problems = outcome.parsed.problems if outcome.parsed is not None else ()
            for problem in problems:
                vkey = (endpoint, problem.field)
                counters.invalid_values[vkey] = counters.invalid_values.get(vkey, 0) + 1
                if (name, endpoint, problem.field) not in self._logged_values:
                    self._logged_values.add((name, endpoint, problem.field))
                    log.warning(
                        "charger %s: %s.%s skipped: %s (logged once; counted in %s)",
                        name,
                        endpoint,
                        problem.field,
                        problem.message,
                        INVALID_VALUES,
                    )

    def exporter_error(self, result: ChargerResult, exc: Exception) -> None:
        """The exporter could not turn this charger's readings into metrics: its own bug, counted as
        ``exporter_error`` on the endpoints whose readings were lost (per scrape: the loss happens every time),
        with a traceback logged once per charger and kind of error."""
        counters = self.counters.get(result.charger.name)
        if counters is None:
            return
        now = time.time()
        for endpoint, outcome in result.endpoints.items():
            if outcome.ok:
                key = (endpoint, Reason.EXPORTER_ERROR.value)
                counters.errors[key] = counters.errors.get(key, 0) + 1
                counters.last_error[key] = now
        self._bugs.error(
            result.charger.name,
            exc,
            "charger %s: cannot build metrics from its readings (exporter bug; logged once, counted as exporter_error)",
            result.charger.name,
        )

    def _log_out_of_fds(self) -> None:
        self._fds_polls += 1
        now = self.clock()
        if now - self._fds_logged_at < FDS_LOG_INTERVAL:
            return
        log.error(
            "the exporter is out of file descriptors: %d charger poll(s) failed with exporter_fds since the last "
            "such line (at most one a minute); raise LimitNOFILE or lower --web.max-connections",
            self._fds_polls,
        )
        self._fds_logged_at, self._fds_polls = now, 0

    def _log_transition(self, name: str, result: ChargerResult) -> None:
        """One line when a charger starts failing or fails differently, one when it recovers; nothing else. The
        exporter out of file descriptors is the whole fleet's state, not a charger's: one line a minute for all."""
        failing = {ep: outcome for ep, outcome in result.endpoints.items() if outcome.reason is not None}
        state = frozenset((ep, str(outcome.reason)) for ep, outcome in failing.items())
        if state and all(reason == Reason.EXPORTER_FDS for _, reason in state):
            self._failing[name] = state
            self._log_out_of_fds()
            return
        previous = self._failing.get(name, frozenset())
        if state == previous:
            return
        if not state:
            del self._failing[name]
            if not all(reason == Reason.EXPORTER_FDS for _, reason in previous):
                log.info("charger %s recovered: every endpoint answers again", name)
            return
        self._failing[name] = state
        by_reason: dict[str, list[str]] = {}
        details: dict[str, str] = {}
        for endpoint, outcome in failing.items():
            by_reason.setdefault(str(outcome.reason), []).append(endpoint)
            details.setdefault(str(outcome.reason), outcome.detail)
        summary = "; ".join(f"{reason} on {', '.join(eps)} ({details[reason]})" for reason, eps in by_reason.items())
        log.warning("charger %s failing: %s", name, summary)
