"""Poll each charger at most once at a time and no more often than it allows; swap chargers on a config reload.

Between the HTTP handlers and :mod:`exporter.scrape.fetch`. Every scrape asks the :class:`Poller` of each charger it
needs for a :class:`Reading`:

* **Coalescing.** While a poll of a charger is in flight, further scrapes of it (a second Prometheus, a Grafana
  refresh, a ``/probe`` next to a ``/metrics``) wait for that poll instead of sending requests of their own: a
  charger never has more than one request per endpoint in flight. The poll runs under the deadline of the scrape
  that started it, pushed later by a scrape with more time that joins it (up to the charger's own timeout from
  the poll's start); a scrape with an earlier deadline stops waiting at its own (and reports a timeout).
* **min_interval.** A reading younger than the charger's ``min_interval`` is served again, with its age, instead
  of polling; except one that timed out under a deadline shorter than the charger's timeout (a scrape's short
  budget): another scrape may have more time, so the next one polls again.
* **Deadlines.** The poller makes each poll's :class:`Deadline` (the charger's timeout, capped by the scrape's
  budget: :func:`deadline_after`) and extends it; :mod:`exporter.scrape.fetch` only runs its requests under it.
* **max_concurrency.** One semaphore bounds how many chargers are polled at once; waiting for a slot counts
  against the charger's deadline. A charger that gets no slot before it is ``throttled`` (the exporter's
  limit, not the device's fault), and that result is never served again for ``min_interval``.
* **Counted once.** A poll is parsed and recorded in the health state exactly once, when it completes: a reading
  shared by concurrent scrapes or served again from the cache is never counted or logged twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, replace

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from exporter.config import ChargerConfig, Config
from exporter.scrape.deadline import Deadline
from exporter.scrape.dns import PoolResolver
from exporter.scrape.fetch import ChargerClient, connection_limit, make_session
from exporter.scrape.health import ExporterHealth
from exporter.scrape.logonce import OncePerKind
from exporter.scrape.parse import parse_charger
from exporter.scrape.results import ENDPOINTS, ChargerFetch, ChargerResult, EndpointFetch, EndpointResult, Reason

log = logging.getLogger("exporter.poll")

THROTTLED_DETAIL = "no free polling slot before the deadline (max_concurrency): the charger was not contacted"
SCRAPE_TIMEOUT_DETAIL = "no answer before the scrape's timeout ran out (the charger's own timeout had not)"
WAIT_TIMEOUT_DETAIL = "the scrape's timeout ran out first (a poll started by another scrape was still running)"
INLINE_PARSE_BYTES = 64 * 1024  # a charger's bodies up to this size are parsed on the event loop (~1 ms)


def deadline_after(charger: ChargerConfig, budget: float | None) -> float:
    """Seconds a charger may take: its timeout, capped by the scrape's budget."""
    return charger.timeout if budget is None else min(charger.timeout, budget)


@dataclass(frozen=True, slots=True)
class Reading:
    """What one scrape gets for one charger."""

    result: ChargerResult
    age: float = 0.0  # seconds since the reading was taken when served from the cache; 0 for a fresh poll


def budget_cut(fetched: ChargerFetch) -> ChargerFetch:
    """The endpoints that timed out under a deadline before the charger's own timeout: ``scrape_timeout``, the
    scrape's budget (Prometheus' scrape timeout) ran out, not the charger's time."""
    if not any(f.reason is Reason.TIMEOUT for f in fetched.endpoints.values()):
        return fetched
    cut = EndpointFetch("", reason=Reason.SCRAPE_TIMEOUT, detail=SCRAPE_TIMEOUT_DETAIL)
    endpoints = {
        ep: replace(cut, endpoint=ep) if f.reason is Reason.TIMEOUT else f for ep, f in fetched.endpoints.items()
    }
    return replace(fetched, endpoints=endpoints)


def failed_result(charger: ChargerConfig, reason: Reason, detail: str, duration: float) -> ChargerResult:
    """A result in which every endpoint failed for the same reason."""
    return ChargerResult(
        charger=charger,
        endpoints={ep: EndpointResult(ep, reason=reason, detail=detail) for ep in ENDPOINTS},
        duration=duration,
        taken_at=time.time(),
    )


class PollWait:
    """One scrape's wait for a poll in flight: :attr:`future` gets the poll's reading when it ends, or, at the
    scrape's own deadline if the poll may run longer (a later scrape gave it more time, or it was started by one
    with more time), what that means for this scrape: ``throttled`` if the poll still waits for a polling slot,
    else ``scrape_timeout``. The poll itself goes on for the others; cancelling the future only stops waiting."""

    __slots__ = ("_deadline", "_handle", "_poller", "_since", "_task", "_until", "future")

    def __init__(self, poller: Poller, task: asyncio.Task[ChargerResult], until: float, since: float) -> None:
        self.future: asyncio.Future[Reading] = asyncio.get_running_loop().create_future()
        self._poller, self._task, self._until, self._since = poller, task, until, since
        self._handle: asyncio.TimerHandle | None = None
        self._deadline = poller._deadline
        task.add_done_callback(self._poll_done)
        self.future.add_done_callback(self._gone)
        self._deadline.watch(self)  # a timer of its own only if the poll may outlast this scrape

    def behind(self, poll_ends: float) -> None:
        if poll_ends > self._until and self._handle is None and not self.future.done():
            self._handle = asyncio.get_running_loop().call_at(self._until, self._expire)

    def _poll_done(self, task: asyncio.Task[ChargerResult]) -> None:
        if self.future.done():
            return
        if task.cancelled():
            self.future.cancel()
        elif (exc := task.exception()) is not None:
            self.future.set_exception(exc)
        else:
            self.future.set_result(Reading(task.result()))

    def _expire(self) -> None:
        self._handle = None
        if self.future.done():
            return
        poller = self._poller
        took = asyncio.get_running_loop().time() - self._since
        if self._deadline.queued:  # that poll has not even reached the charger yet
            result = failed_result(poller.charger, Reason.THROTTLED, THROTTLED_DETAIL, took)
        else:  # the poll has more time than this scrape (up to the charger's own timeout): the scrape's budget ran out
            result = failed_result(poller.charger, Reason.SCRAPE_TIMEOUT, WAIT_TIMEOUT_DETAIL, took)
        self.future.set_result(Reading(result))

    def _gone(self, _: asyncio.Future[Reading]) -> None:
        self._task.remove_done_callback(self._poll_done)
        self._deadline.unwatch(self)
        if self._handle is not None:
            self._handle.cancel()


class Poller:
    """One charger's polls: at most one in flight, the last one kept for ``min_interval``."""

    def __init__(
        self,
        client: ChargerClient,
        health: ExporterHealth,
        limiter: asyncio.Semaphore | None,
        parse_pool: Executor | None = None,
    ) -> None:
        self.client = client
        self.charger = client.charger
        self.health = health  # where each completed poll is recorded, once
        self.limiter = limiter  # max_concurrency's slots, shared by the fleet's pollers; the fleet swaps it on reload
        self.parse_pool = parse_pool  # the fleet's threads for large bodies (None: always on the event loop)
        self._task: asyncio.Task[ChargerResult] | None = None
        self._deadline = Deadline(0.0)  # of the poll in flight
        self._poll_limit = 0.0  # the latest its deadline may be pushed to: its start + the charger's timeout
        self._last: ChargerResult | None = None
        self._last_started = 0.0  # event-loop time at which the last completed poll started
        self.polled = False  # ever asked to poll (its connections may be open): the fleet counts its sockets
        self._bugs = OncePerKind(log)
        self._task_name = f"poll {self.charger.name}"  # each poll's task's, written once

    def __repr__(self) -> str:
        return f"Poller({self.charger.name!r})"

    def adopt(self, other: Poller) -> None:
        """Take over the cached reading and the poll in flight of the poller this one replaces (same charger, same
        config, a new connection pool): scrapes join that poll instead of sending the charger a second request."""
        self._last, self._last_started = other._last, other._last_started
        task = other._task
        if task is not None and not task.done():
            self._task, self._deadline, self._poll_limit = task, other._deadline, other._poll_limit
            task.add_done_callback(lambda done: self._adopted_done(other, done))

    def _adopted_done(self, other: Poller, task: asyncio.Task[ChargerResult]) -> None:
        if self._task is task:
            self._task = None
        if other._last is not None and other._last_started > self._last_started:  # the poll kept its reading
            self._last, self._last_started = other._last, other._last_started

    def reading(self, deadline: float, own: float) -> Reading | asyncio.Future[Reading]:
        """The reading for a scrape that ends by ``deadline``: at once (from the cache), or a future of it (no task
        per charger and scrape). ``own`` is when the charger's own timeout would run out for it (now + its
        timeout): a poll ended before that was cut short by the scrape."""
        now = asyncio.get_running_loop().time()
        if self._last is not None and now - self._last_started < self.charger.min_interval:
            return Reading(self._last, age=max(now - self._last_started, 0.0))
        task = self._task
        if task is None:
            task = self._start(deadline, own)
        else:  # a scrape with more time: the poll gets it too, so that it does not time out for us too early
            self._deadline.extend(min(deadline, self._poll_limit))
        return PollWait(self, task, deadline, now).future

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def in_flight(self) -> asyncio.Task[ChargerResult] | None:
        """The poll running now, if any."""
        task = self._task
        return task if task is not None and not task.done() else None

    def _start(self, deadline: float, own: float) -> asyncio.Task[ChargerResult]:
        self._deadline = Deadline(deadline)
        self._poll_limit = max(deadline, own)
        task = asyncio.create_task(self._poll(self._deadline, self._poll_limit), name=self._task_name)
        self._task = task
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[ChargerResult]) -> None:
        if self._task is task:
            self._task = None
        if not task.cancelled():
            task.exception()  # retrieved: waiters got it already; never "exception was never retrieved"

    async def _poll(self, deadline: Deadline, limit: float) -> ChargerResult:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            fetched = await self._fetch(deadline)
            if deadline.when < limit:  # the scrape's budget, not the charger's own timeout, ended the poll
                fetched = budget_cut(fetched)
            result = await self._parse(fetched)
        except Exception as exc:  # a bug in the exporter must not look like the charger's fault, nor stop others
            self._bugs.error(self.charger.name, exc, "charger %s: unexpected error while polling", self.charger.name)
            detail = f"exporter error: {type(exc).__name__}"
            result = failed_result(self.charger, Reason.EXPORTER_ERROR, detail, loop.time() - started)
        finally:
            deadline.close()
        reasons = {e.reason for e in result.endpoints.values()}
        # A timeout under a scrape's short budget is not the charger's answer for min_interval; nor is a poll that
        # never got a polling slot (throttled): the charger was not even asked.
        cut_short = Reason.THROTTLED in reasons or Reason.SCRAPE_TIMEOUT in reasons
        if not cut_short:
            self._last, self._last_started = result, started
        try:
            self.health.record([result])
        except Exception:
            log.exception("charger %s: cannot record the poll", self.charger.name)
        return result

    async def _parse(self, fetched: ChargerFetch) -> ChargerResult:
        """Parse on the event loop, or in the parse threads when the bodies are large: decoding 1 MiB (the cap) of
        JSON with ``NaN`` literals to repair takes ~0.1 s, which must not stall every other request."""
        pool = self.parse_pool
        if pool is None or sum(len(f.body) for f in fetched.endpoints.values() if f.body) <= INLINE_PARSE_BYTES:
            return parse_charger(fetched)
        return await asyncio.get_running_loop().run_in_executor(pool, parse_charger, fetched)

    async def _fetch(self, deadline: Deadline) -> ChargerFetch:
        limiter = self.limiter
        if limiter is None:
            return await self.client.fetch(deadline)
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline.queued = True  # on the poll's deadline: a poller that adopts the poll on a reload shares it
        try:
            with deadline.scope():
                await limiter.acquire()
        except TimeoutError:
            return ChargerFetch(
                charger=self.charger,
                endpoints={ep: EndpointFetch(ep, reason=Reason.THROTTLED, detail=THROTTLED_DETAIL) for ep in ENDPOINTS},
                duration=loop.time() - started,
                taken_at=time.time(),
            )
        finally:
            deadline.queued = False
        try:
            return await self.client.fetch(deadline)
        finally:
            limiter.release()


def _origin(url: str) -> tuple[str, str | None, int | None]:
    """What a pooled connection is kept for: scheme, host and port (chargers behind one address share them)."""
    parsed = URL(url)
    return parsed.scheme, parsed.host, parsed.port


class Fleet:
    """The chargers being served: a :class:`Poller` per configured charger, on one shared HTTP session.

    :meth:`apply` swaps in a reloaded config: unchanged chargers keep their poller (its client, cached reading
    and connections), new ones get one, removed ones are dropped (scrapes already waiting for them finish). A
    reload that leaves connections no charger can use any more (a charger removed or moved to a host and port no
    other charger has, or a pool much larger than the new config needs) starts a new HTTP session and closes the
    old one once the polls still using it have ended: its idle connections would otherwise hold their file
    descriptors for ``keepalive_timeout`` (200 chargers moved under a 1,024-fd limit left 147 of them failing with
    ``exporter_fds`` for minutes; a shrink from 3,000 chargers to 10 left 9,325 fds open). The chargers kept then
    reconnect once.
    """

    def __init__(self, config: Config, health: ExporterHealth, resolver: AbstractResolver | None) -> None:
        self.config = config
        self.health = health
        self.pollers: dict[str, Poller] = {}
        self.limiter: asyncio.Semaphore | None = None
        self._limiter_size: int | None = None
        self.session: aiohttp.ClientSession | None = None
        # One resolver for every session (a reload may replace the session): lookups in threads of their own.
        self._own_resolver = resolver is None
        self.resolver: AbstractResolver = resolver if resolver is not None else PoolResolver()
        self._session_shape: tuple[int, float] = (0, 0.0)  # (connection limit, keep-alive) of the session
        self._retired: set[asyncio.Task[None]] = set()
        self.parse_pool: ThreadPoolExecutor | None = None  # started with the fleet, for large bodies
        self._polled = 0  # pollers of this session that were ever asked to poll

    def __repr__(self) -> str:
        return f"Fleet({len(self.pollers)} chargers from {self.config.source!r})"

    def start(self) -> None:
        self.parse_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parse")
        self.apply(self.config)

    def apply(self, config: Config) -> None:
        """Serve ``config`` from the next scrape on. Needs a running event loop."""
        old = self.pollers
        shape = (
            connection_limit(len(config.chargers), config.max_concurrency),
            config.keepalive_timeout,
        )
        new_session = self.session is None or shape[0] != self._session_shape[0] or shape[1] != self._session_shape[1]
        if not new_session:  # are there idle connections that no charger of the new config can reuse?
            origins = {_origin(charger.url) for charger in config.chargers}
            new_session = any(_origin(p.charger.url) not in origins for p in old.values())
        session = self.session
        if session is None or new_session:
            if session is not None:
                self._retire(session, list(old.values()))
            session = self.session = make_session(
                len(config.chargers),
                self.resolver,
                keepalive_timeout=config.keepalive_timeout,
                max_concurrency=config.max_concurrency,
            )
            self._session_shape = shape
        if self.limiter is None or config.max_concurrency != self._limiter_size:  # polls in flight keep the old one
            self.limiter = asyncio.Semaphore(config.max_concurrency) if config.max_concurrency else None
            self._limiter_size = config.max_concurrency
        pollers: dict[str, Poller] = {}
        for charger in config.chargers:
            kept = old.get(charger.name)
            if kept is not None and kept.charger == charger and not new_session:
                kept.limiter, kept.parse_pool = self.limiter, self.parse_pool
                pollers[charger.name] = kept
                continue
            poller = Poller(ChargerClient(charger, session), self.health, self.limiter, self.parse_pool)
            if kept is not None and kept.charger == charger:
                poller.adopt(kept)
            pollers[charger.name] = poller
        self.pollers = pollers
        self.config = config
        self.health.apply(config.chargers)
        if new_session:  # the new pollers' connections are yet to be made; so are the adopted polls'
            for poller in pollers.values():
                poller.polled = False
        self._polled = sum(poller.polled for poller in pollers.values())

    def sockets_in_use(self) -> int:
        """The sockets to chargers the exporter may hold now: one per endpoint of each charger polled since the
        session started (kept alive between scrapes), within the session's pool. An ``/sd``-sharded replica polls
        only its share of the configured chargers."""
        return min(len(ENDPOINTS) * self._polled, self._session_shape[0])

    async def read(self, pollers: Sequence[Poller], budget: float | None) -> list[Reading]:
        """A reading of each charger, concurrently; each under its own deadline (its timeout, capped by budget)."""
        now = asyncio.get_running_loop().time()
        for poller in pollers:
            if not poller.polled:
                poller.polled = True
                self._polled += 1
        got = [p.reading(now + max(deadline_after(p.charger, budget), 0.0), now + p.charger.timeout) for p in pollers]
        waits = [r for r in got if not isinstance(r, Reading)]
        if waits:
            await asyncio.gather(*waits)  # futures, not coroutines: no task each
        return [r if isinstance(r, Reading) else r.result() for r in got]

    def _retire(self, session: aiohttp.ClientSession, pollers: Sequence[Poller]) -> None:
        """Close a replaced session once the polls that may still use it are over (each ends by its deadline)."""

        async def close_later() -> None:
            await asyncio.sleep(0)  # scrapes that were about to start a poll on it have started it by now
            polls = {task for task in (p.in_flight() for p in pollers) if task is not None}
            with contextlib.suppress(asyncio.CancelledError):
                if polls:
                    await asyncio.wait(polls)
            await session.close()

        task = asyncio.create_task(close_later(), name="close replaced HTTP session")
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    async def close(self) -> None:
        for poller in self.pollers.values():
            poller.cancel()
        for task in list(self._retired):
            task.cancel()
        await asyncio.gather(*self._retired, return_exceptions=True)
        if self.session is not None:
            await self.session.close()
        if self._own_resolver:
            await self.resolver.close()
        if self.parse_pool is not None:
            self.parse_pool.shutdown(wait=False, cancel_futures=True)
