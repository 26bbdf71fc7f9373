"""A poll's deadline (exporter/scrape/deadline.py): every request of a poll times out at it, on one timer.

What the poller relies on, as ``asyncio.timeout_at`` would give it: a request still running at the deadline ends
with ``TimeoutError``, one that answered keeps its answer, a deadline pushed later gives the running requests the
time, and a cancellation that is not the deadline's (a shutdown) stays a cancellation. On the test's loop clock
(``loop_clock``): time moves when the test says so.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import ClassVar, cast

import aiohttp
import pytest

from exporter.config import ChargerConfig
from exporter.scrape.deadline import Deadline
from exporter.scrape.fetch import ChargerClient
from exporter.scrape.health import ExporterHealth
from exporter.scrape.poll import Poller
from exporter.scrape.results import EndpointFetch, Reason
from tests.support.clock import LoopClock


async def under(deadline: Deadline, seconds: float) -> str:
    """A request that takes ``seconds``, under ``deadline``."""
    try:
        with deadline.scope():
            await asyncio.sleep(seconds)
    except TimeoutError:
        return "timeout"
    return "answer"


async def test_requests_still_running_at_the_deadline_time_out_and_the_others_keep_their_answers(
    loop_clock: LoopClock,
) -> None:
    loop = asyncio.get_running_loop()
    deadline = Deadline(loop.time() + 1.0)
    outcomes = asyncio.gather(under(deadline, 0.5), under(deadline, 2.0), under(deadline, 0.9), under(deadline, 5))
    assert list(await loop_clock.run(outcomes)) == ["answer", "timeout", "answer", "timeout"]
    assert deadline.expired


async def test_one_timer_for_every_request_of_a_poll(loop_clock: LoopClock, monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    timers = []
    call_at = loop.call_at

    def counted(when: float, callback: object, *args: object, **kwargs: object) -> asyncio.TimerHandle:
        timers.append(when)
        return call_at(when, callback, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "call_at", counted)
    deadline = Deadline(loop.time() + 1.0)
    await loop_clock.run(asyncio.gather(*(under(deadline, 0.1) for _ in range(4))))
    deadline.close()
    sleeps = [when for when in timers if when < deadline.when]  # the requests' own asyncio.sleep
    assert len(timers) - len(sleeps) == 1, "the four requests share the poll's one timer"


async def test_a_deadline_pushed_later_gives_the_running_requests_the_time(loop_clock: LoopClock) -> None:
    loop = asyncio.get_running_loop()
    deadline = Deadline(loop.time() + 1.0)
    outcome = asyncio.ensure_future(under(deadline, 1.5))
    await loop_clock.advance(0.5)
    deadline.extend(loop.time() + 1.5)  # a scrape with more time joined the poll
    deadline.extend(loop.time() + 0.2)  # never earlier
    assert await loop_clock.run(outcome) == "answer"
    assert not deadline.expired


async def test_a_cancellation_that_is_not_the_deadlines_stays_a_cancellation(loop_clock: LoopClock) -> None:
    loop = asyncio.get_running_loop()
    deadline = Deadline(loop.time() + 1.0)
    task = asyncio.ensure_future(under(deadline, 5.0))
    await loop_clock.advance(0.1)
    task.cancel()  # a shutdown
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_request_that_starts_after_the_deadline_times_out_at_its_first_wait(loop_clock: LoopClock) -> None:
    loop = asyncio.get_running_loop()
    deadline = Deadline(loop.time() + 0.5)
    assert await loop_clock.run(under(deadline, 1.0)) == "timeout"
    assert await loop_clock.run(under(deadline, 1.0)) == "timeout", "the deadline has passed: no time at all"
    assert await under(deadline, 0) == "timeout", "as asyncio.timeout_at: cancelled at its first wait"


class Wait:
    """A scrape waiting for the poll until ``until`` (as :class:`exporter.scrape.poll.PollWait` does)."""

    def __init__(self, until: float) -> None:
        self.until = until
        self.timed_out_at: float | None = None

    def behind(self, poll_ends: float) -> None:
        if poll_ends > self.until and self.timed_out_at is None:
            self.timed_out_at = self.until


def told(wait: Wait) -> float | None:
    return wait.timed_out_at


async def test_a_waiting_scrape_is_told_only_when_the_poll_may_outlast_it() -> None:
    deadline = Deadline(10.0)
    same, earlier = Wait(10.0), Wait(5.0)
    deadline.watch(same)
    deadline.watch(earlier)
    assert told(same) is None, "the scrape that started the poll: the poll ends by its deadline"
    assert told(earlier) == 5.0, "a scrape with less time than the poll times out at its own deadline"
    deadline.extend(12.0)
    assert told(same) == 10.0, "pushed past its deadline by a later scrape: it times out at its own"
    late = Wait(20.0)
    deadline.unwatch(same)
    deadline.watch(late)
    deadline.extend(15.0)
    assert told(late) is None


async def test_a_request_entering_once_the_time_has_come_gets_an_extension_made_before_the_timer_runs() -> None:
    """As ``asyncio.timeout_at`` rescheduled: the deadline is pushed before its timer has run, so nothing is cut."""
    loop = asyncio.get_running_loop()
    deadline = Deadline(loop.time())
    request = asyncio.ensure_future(under(deadline, 0.05))
    await asyncio.sleep(0)  # the request is in its scope; the deadline's time has come, its timer has not run
    deadline.extend(loop.time() + 1.0)
    assert await request == "answer"


async def test_an_expired_deadline_stays_where_it_was(loop_clock: LoopClock) -> None:
    """The poll judges by the deadline's time whether the scrape's budget or the charger's own timeout cut it off:
    a scrape joining after the cut must not move it."""
    loop = asyncio.get_running_loop()
    deadline = Deadline(loop.time() + 0.2)
    assert await loop_clock.run(under(deadline, 1.0)) == "timeout"
    cut_at = deadline.when
    deadline.extend(loop.time() + 5.0)
    assert deadline.expired and deadline.when == cut_at


class SlowCharger(ChargerClient):
    """A healthy charger that answers every request in 0.3 s (its timeout is 5 s)."""

    cut: ClassVar[list[str]] = []

    async def _get(self, endpoint: str) -> bytes | EndpointFetch:
        try:
            await asyncio.sleep(0.3)
        except asyncio.CancelledError:
            self.cut.append(endpoint)
            raise
        return b"{}"


async def test_a_scrape_joining_a_poll_its_shorter_scrape_cut_off_does_not_make_it_the_chargers_timeout() -> None:
    """Scrape A (0.05 s budget) starts the poll; its deadline cuts the requests; scrape B (the charger's 5 s) joins
    while they unwind. Both get ``scrape_timeout`` (the scrape's budget, not the charger), nothing is kept for
    ``min_interval`` and the charger is not counted as timing out."""
    loop = asyncio.get_running_loop()
    charger = ChargerConfig("garage", "http://127.0.0.1:9", timeout=5.0, min_interval=60.0)
    health = ExporterHealth([charger])
    poller = Poller(SlowCharger(charger, cast(aiohttp.ClientSession, None)), health, None)
    now = loop.time()
    first = poller.reading(now + 0.05, now + 5.0)
    assert isinstance(first, asyncio.Future)
    for _ in range(100_000):  # bounded: until the deadline has cut the requests and the poll has not ended yet
        await asyncio.sleep(0)
        if SlowCharger.cut and poller.in_flight() is not None:
            break
    now = loop.time()
    second = poller.reading(now + 5.0, now + 5.0)
    assert isinstance(second, asyncio.Future), "joined the poll in flight"
    for reading in (await first, await second):
        assert {e.reason for e in reading.result.endpoints.values()} == {Reason.SCRAPE_TIMEOUT}
    again = poller.reading(loop.time() + 5.0, loop.time() + 5.0)
    assert isinstance(again, asyncio.Future), "a poll cut off by a scrape's budget is not served for min_interval"
    poller.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await again
    assert {reason for _, reason in health.counters["garage"].errors} == {Reason.SCRAPE_TIMEOUT}, "never `timeout`"


async def test_a_scrape_joining_a_poll_adopted_on_a_reload_and_still_queued_is_told_throttled() -> None:
    """A reload's new poller adopts the poll in flight; a scrape with less time joins it while it still waits for a
    max_concurrency slot: the charger was never asked, so ``throttled`` (the exporter's limit), not
    ``scrape_timeout``."""
    loop = asyncio.get_running_loop()
    charger = ChargerConfig("garage", "http://127.0.0.1:9", timeout=5.0)
    health = ExporterHealth([charger])
    no_slot = asyncio.Semaphore(0)
    old = Poller(SlowCharger(charger, cast(aiohttp.ClientSession, None)), health, no_slot)
    now = loop.time()
    first = old.reading(now + 5.0, now + 5.0)  # queued for a slot that never comes
    assert isinstance(first, asyncio.Future)
    await asyncio.sleep(0)
    new = Poller(SlowCharger(charger, cast(aiohttp.ClientSession, None)), health, no_slot)
    new.adopt(old)
    joined = new.reading(loop.time() + 0.05, loop.time() + 5.0)
    assert isinstance(joined, asyncio.Future)
    reading = await joined
    assert {e.reason for e in reading.result.endpoints.values()} == {Reason.THROTTLED}
    old.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await first
