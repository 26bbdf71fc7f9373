"""Large replies under many clients: assembled once for all who ask at the same time, sent without a copy each.

500 chargers (150 hung) took 83 MiB of RSS for one ``/metrics`` scrape, 258 MiB for 100 at once and 818 MiB for 256
clients that never read their replies: every request built its own families and exposition, and each reply was
copied whole into its connection's write buffer. So:

* :class:`SharedReplies`: a request that arrives while the same reply (same key: format, compression) is being
  assembled for a scrape with nearly the same deadline waits for that one instead of assembling its own (as polls
  are already shared per charger, :mod:`exporter.scrape.poll`). Joining is only for a deadline at most
  :data:`JOIN_WINDOW` later than the one being assembled: a scrape with much more time would otherwise get
  chargers cut off by the shorter one's budget.
* :func:`send`: the body goes out in :data:`CHUNK` pieces, each written only once the connection has taken the last
  (aiohttp's drain): a client that does not read holds at most one piece in its write buffer, and the body itself
  is one object shared by every request that asked for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Final

from aiohttp import web

CHUNK: Final = 64 * 1024  # aiohttp drains a connection's buffer past 64 KiB: one piece in flight per client
JOIN_WINDOW: Final = 1.0  # seconds a joining scrape's deadline may be later than the assembly's


@dataclass(frozen=True, slots=True)
class Reply:
    body: bytes
    headers: Mapping[str, str]


async def send(request: web.Request, reply: Reply) -> web.StreamResponse:
    """Write ``reply`` to the client a piece at a time (see the module's docstring)."""
    response = web.StreamResponse(headers=reply.headers)
    response.content_length = len(reply.body)
    await response.prepare(request)
    body = memoryview(reply.body)
    for start in range(0, len(body), CHUNK):
        await response.write(body[start : start + CHUNK])
    await response.write_eof()
    return response


class SharedReplies:
    """The replies being assembled, by key; each with the deadline of the scrape that started it."""

    def __init__(self) -> None:
        self._assembling: dict[Hashable, list[tuple[float | None, asyncio.Task[Reply]]]] = {}
        self._recent: dict[Hashable, tuple[float, Reply]] = {}  # key -> (loop time it was made, reply)
        self.shared = 0  # requests that got another one's reply (for tests and curiosity)

    def __repr__(self) -> str:
        return f"SharedReplies({sum(map(len, self._assembling.values()))} being assembled, {self.shared} shared)"

    async def get(
        self,
        key: Hashable,
        deadline: float | None,
        assemble: Callable[[], Awaitable[Reply]],
        fresh_for: float = 0.0,
    ) -> Reply:
        """The reply for ``key``: one made less than ``fresh_for`` seconds ago, one being assembled for a scrape
        with a compatible ``deadline`` (event-loop time; None for a scrape without a budget), or a new one. A
        client that goes away never cancels the assembly the others wait for."""
        now = asyncio.get_running_loop().time()
        recent = self._recent.get(key)
        if recent is not None and now - recent[0] < fresh_for:
            self.shared += 1
            return recent[1]
        for other, task in self._assembling.get(key, ()):
            if _joins(other, deadline):
                self.shared += 1
                return await asyncio.shield(task)
        task = asyncio.ensure_future(assemble())
        entry = (deadline, task)
        self._assembling.setdefault(key, []).append(entry)
        task.add_done_callback(lambda done: self._done(key, entry))
        reply = await asyncio.shield(task)
        if fresh_for > 0:
            self._recent[key] = (now, reply)
        return reply

    def _done(self, key: Hashable, entry: tuple[float | None, asyncio.Task[Reply]]) -> None:
        entries = self._assembling.get(key, [])
        if entry in entries:
            entries.remove(entry)
        if not entries:
            self._assembling.pop(key, None)
        task = entry[1]
        if not task.cancelled():
            task.exception()  # retrieved: whoever waited got it; never "exception was never retrieved"


def _joins(assembling: float | None, deadline: float | None) -> bool:
    if assembling is None or deadline is None:
        return assembling is deadline
    return deadline - JOIN_WINDOW <= assembling <= deadline
