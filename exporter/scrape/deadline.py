"""A poll's deadline: one timer for everything that waits under it.

A poll of one charger runs several requests at once and may wait for a ``max_concurrency`` slot first, each under
the same deadline, which a scrape with more time that joins the poll may push later (:mod:`exporter.scrape.poll`).
``asyncio.timeout_at`` per request would start a timer per request and move each one at every extension: at
thousands of chargers per scrape, a visible share of the exporter's own CPU (docs/benchmark/). Here the poll has one
timer; each :meth:`Deadline.scope` only joins a set, and when the timer fires every task still in a scope is
cancelled, and its scope turns that cancellation into ``TimeoutError`` as ``asyncio.timeout_at`` does (another
cancellation of the task, such as a shutdown, stays a cancellation; a push that comes before the timer has run is
honoured, as a reschedule is). Once it has fired, a deadline stays where it was: the poll tells by its time whether
the scrape's budget or the charger's own timeout cut the requests off.

A scrape waiting for a poll (a :class:`Waiter` the deadline :meth:`Deadline.watch`-es) gives up at its own deadline
only when that is earlier than the poll's: then it has a timer of its own, started when it joins, or when a later
scrape pushes the poll's deadline past it. A scrape whose deadline is the poll's (the one that started it) needs
none: the poll ends by then, with whatever did answer.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Protocol


class Waiter(Protocol):
    """A scrape waiting for a poll until a deadline of its own (:class:`exporter.scrape.poll.PollWait`)."""

    def behind(self, poll_ends: float) -> None:
        """The poll may now run until ``poll_ends``: if that is past the wait's own end, it times out then."""


class Deadline:
    """The event-loop time a poll ends by (:attr:`when`), and its one timer, armed when the first scope enters.
    :meth:`close` it when the poll is over."""

    __slots__ = ("_handle", "_scopes", "_waiters", "expired", "queued", "when")

    def __init__(self, when: float) -> None:
        self.when = when
        self.expired = False
        self.queued = False  # the poll still waits for a max_concurrency slot (set by the poller)
        self._handle: asyncio.TimerHandle | None = None
        self._scopes: set[Scope] = set()  # requests (and slot waits) running under it now
        self._waiters: set[Waiter] = set()  # scrapes waiting for the poll, each until its own deadline

    def __repr__(self) -> str:
        return f"Deadline({self.when:.3f}{', expired' if self.expired else ''})"

    def close(self) -> None:
        """The poll is over: its timer is no longer needed."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def extend(self, when: float) -> None:
        """Push the deadline later (never earlier). Once it has expired it stays where it was: its requests have
        been cut off, and the poll judges by :attr:`when` whether the scrape's budget or the charger's own timeout
        did that."""
        if when <= self.when or self.expired:
            return
        self.when = when
        if self._handle is not None:
            self._handle.cancel()
            self._handle = asyncio.get_running_loop().call_at(when, self._expire)
        for waiter in self._waiters:
            waiter.behind(when)

    def scope(self) -> Scope:
        """Like ``asyncio.timeout_at(self.when)``, following later extensions, on the poll's one timer; a plain
        ``with`` (entering and leaving it needs no wait, and a coroutine per request and scope would cost more)."""
        return Scope(self)

    def watch(self, waiter: Waiter) -> None:
        """Tell ``waiter`` when the deadline is pushed later (now, and at every :meth:`extend`)."""
        self._waiters.add(waiter)
        waiter.behind(self.when)

    def unwatch(self, waiter: Waiter) -> None:
        self._waiters.discard(waiter)

    def _expire(self) -> None:
        self._handle = None
        self.expired = True
        for scope in list(self._scopes):
            scope.fire()


class Scope:
    """One task's time under a :class:`Deadline` (see :meth:`Deadline.scope`)."""

    __slots__ = ("_cancelling", "_deadline", "_fired", "_handle", "_task")

    def __init__(self, deadline: Deadline) -> None:
        self._deadline = deadline
        self._task: asyncio.Task[object] | None = None
        self._fired = False
        self._cancelling = 0
        self._handle: asyncio.Handle | None = None  # a timer of this scope's own, when it has one

    def __enter__(self) -> None:
        loop = asyncio.get_running_loop()
        self._enter(loop)
        deadline = self._deadline
        if deadline.expired:
            self._handle = loop.call_soon(self.fire)  # as asyncio.timeout_at past its time: cut at the first wait
            return
        deadline._scopes.add(self)
        if deadline._handle is None:  # a time already past falls due at once, unless the deadline is pushed first
            deadline._handle = loop.call_at(deadline.when, deadline._expire)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._deadline._scopes.discard(self)
        self._exit(kind, exc)

    def _enter(self, loop: asyncio.AbstractEventLoop) -> None:
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("a deadline scope must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()

    def _exit(self, kind: type[BaseException] | None, exc: BaseException | None) -> None:
        if self._handle is not None:
            self._handle.cancel()
        task = self._task
        # Ours, unless the task was also cancelled by someone else meanwhile (then it stays a cancellation).
        if self._fired and task is not None and task.uncancel() <= self._cancelling and kind is asyncio.CancelledError:
            raise TimeoutError from exc

    def fire(self) -> None:
        if not self._fired and self._task is not None:
            self._fired = True
            self._task.cancel()
