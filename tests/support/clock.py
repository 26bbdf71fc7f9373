"""A fake clock for the event loop: deadline tests move time on instead of waiting for it (``loop_clock`` fixture).

As query-exporter's tests do: ``loop.time()`` becomes the real time plus whatever the test has advanced, so every
``asyncio.sleep``, ``wait_for``, ``asyncio.timeout`` and ``call_later`` of the exporter, of aiohttp and of the
in-process simulator (they share the test's loop) falls due when the test says so. Polls, charger deadlines,
``min_interval`` and the simulator's ``latency`` and ``hang`` faults all run on that clock; the simulator's ``reboot``
and readings' ``taken_at`` use the wall clock (``time.time()``) and are not moved.

Only the standard loop's clock can be moved (uvloop's is libuv's own): ``conftest.py`` runs a test that asks for
``loop_clock`` on the standard loop.

Between two moves, :meth:`LoopClock.settle` lets the loop run what is already under way on loopback (a request
written, its answer read) without letting time pass, so that a step happens at the virtual time the test chose.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

# Loop rounds that settle() runs: each lets a callback, a task step or a ready socket go on. A scrape through the
# exporter to the simulator and back takes about 30 on loopback; what is still under way after these waits for the
# next move (or for real time, which still passes).
SETTLE_ROUNDS = 200


class LoopClock:
    """``loop``'s clock, moved on by the test (see the module's docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._real = loop.time
        self.advanced = 0.0

    def install(self) -> None:
        self._loop.time = self.time  # type: ignore[method-assign]

    def time(self) -> float:
        return self._real() + self.advanced

    async def settle(self) -> None:
        """Let the loop run what is under way, without moving the clock."""
        for _ in range(SETTLE_ROUNDS):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Settle, move the clock ``seconds`` on, and settle again: what fell due has run."""
        await self.settle()
        self.advanced += seconds
        await self.settle()

    async def run(self, awaitable: Awaitable[T], step: float = 0.1, limit: float = 60.0) -> T:
        """Await ``awaitable`` while moving the clock on by ``step`` whenever the loop has settled, up to ``limit``
        seconds of virtual time (then fail: something waits for more than time)."""
        task = asyncio.ensure_future(awaitable)
        moved = 0.0
        while not task.done():
            if moved >= limit:
                task.cancel()
                raise AssertionError(f"not done after {limit} s moved on: {awaitable!r}")
            await self.advance(step)
            moved += step
        return task.result()
