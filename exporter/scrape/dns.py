"""Host-name lookups for the chargers' URLs, in threads of their own: :class:`PoolResolver`.

aiohttp's default resolver runs ``getaddrinfo()`` in the event loop's default thread pool (``min(32, CPUs + 4)``
threads), shared with everything else that uses it, and caches no failure. A DNS server that
never answers for some names holds one thread per lookup until the C library gives up (5 s per try and server,
often 10-30 s in all), and every scrape starts new ones: 12 such chargers made 3 healthy host-name chargers time out
on 3 scrapes in a row (~20 s). Here:

- each host name has at most one lookup in flight: a charger whose lookup hangs waits for that same lookup on the
  next scrape instead of taking another thread, and gives up at its own deadline (the poller's); the thread is held
  only until ``getaddrinfo()`` returns;
- names whose last lookup answered are looked up in :data:`KNOWN_THREADS` threads of their own, apart from names
  never resolved yet, failing or hanging (:data:`OTHER_THREADS`): a name that starts hanging moves to the second
  pool as soon as a caller gives up on it, so hanging names can never queue a healthy name's lookup;
- a failed lookup (no such name, no answer) is remembered for :data:`FAILED_TTL` seconds and answered from memory
  meanwhile: 40 chargers with a dead name cost 40 lookups every 30 s, not on every scrape.

Successful lookups are cached by aiohttp's connector (``ttl_dns_cache``), as before.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from aiohttp.abc import AbstractResolver, ResolveResult

KNOWN_THREADS: Final = 4
OTHER_THREADS: Final = 16
FAILED_TTL: Final = 30.0
_NUMERIC: Final = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV

GetAddrInfo = Callable[..., list[tuple[Any, ...]]]


class PoolResolver(AbstractResolver):
    """``getaddrinfo()`` in two bounded thread pools of its own, one lookup per name at a time, failures cached.

    ``getaddrinfo`` replaces :func:`socket.getaddrinfo` (tests pass one that never answers for some names);
    ``clock`` replaces :func:`time.monotonic`."""

    def __init__(self, getaddrinfo: GetAddrInfo | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._getaddrinfo = getaddrinfo
        self.clock = clock
        self._known_pool = ThreadPoolExecutor(max_workers=KNOWN_THREADS, thread_name_prefix="dns")
        self._other_pool = ThreadPoolExecutor(max_workers=OTHER_THREADS, thread_name_prefix="dns-new")
        self._known: set[str] = set()  # names whose last lookup answered
        self._failed: dict[tuple[str, int, int], tuple[float, OSError]] = {}  # key -> (until, the error)
        self._inflight: dict[tuple[str, int, int], asyncio.Future[list[tuple[Any, ...]]]] = {}

    def __repr__(self) -> str:
        return f"PoolResolver({len(self._inflight)} lookups in flight, {len(self._failed)} failures cached)"

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        key = (host, port, int(family))
        failed = self._failed.get(key)
        if failed is not None:
            if failed[0] > self.clock():
                raise _copy(failed[1])
            del self._failed[key]
        future = self._inflight.get(key)
        if future is None:
            future = self._start(key)
        try:
            infos = await asyncio.shield(future)  # a caller at its deadline must not cancel the lookup others share
        except asyncio.CancelledError:
            self._known.discard(host)  # given up on: its next lookup must not hold a thread of the known pool
            raise
        return [_result(host, info) for info in infos if info[0] != socket.AF_INET6 or len(info[4]) >= 3]

    def _start(self, key: tuple[str, int, int]) -> asyncio.Future[list[tuple[Any, ...]]]:
        host, port, family = key
        pool = self._known_pool if host in self._known else self._other_pool
        lookup = self._getaddrinfo or socket.getaddrinfo  # looked up now, so that a patched socket module counts
        future = asyncio.get_running_loop().run_in_executor(
            pool, lambda: lookup(host, port, family, socket.SOCK_STREAM, 0, socket.AI_ADDRCONFIG)
        )
        self._inflight[key] = future
        future.add_done_callback(lambda done: self._done(key, done))
        return future

    def _done(self, key: tuple[str, int, int], future: asyncio.Future[list[tuple[Any, ...]]]) -> None:
        self._inflight.pop(key, None)
        if future.cancelled():
            return
        exc = future.exception()
        if exc is None:
            self._known.add(key[0])
        elif isinstance(exc, OSError) and not _local(exc):
            self._known.discard(key[0])
            self._failed[key] = (self.clock() + FAILED_TTL, exc)

    async def close(self) -> None:
        # A lookup that hangs cannot be stopped; its thread ends when getaddrinfo() returns.
        for pool in (self._known_pool, self._other_pool):
            pool.shutdown(wait=False, cancel_futures=True)


def _local(exc: OSError) -> bool:
    """A failure of this process (out of file descriptors or memory), not an answer about the name: not cached."""
    return isinstance(exc, socket.gaierror) and exc.errno in (socket.EAI_SYSTEM, socket.EAI_MEMORY)


def _copy(exc: OSError) -> OSError:
    """A fresh exception per caller: one raised object would collect every caller's traceback."""
    return type(exc)(*exc.args) if isinstance(exc, socket.gaierror) else OSError(exc.errno, exc.strerror)


def _result(host: str, info: tuple[Any, ...]) -> ResolveResult:
    family, _, proto, _, address = info
    resolved, port = address[0], address[1]
    if family == socket.AF_INET6 and address[3]:  # link-local: the scope id is part of the address (numeric only)
        resolved, service = socket.getnameinfo(address, socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)
        port = int(service)
    return ResolveResult(hostname=host, host=resolved, port=port, family=family, proto=proto, flags=_NUMERIC)


__all__ = ["FAILED_TTL", "KNOWN_THREADS", "OTHER_THREADS", "PoolResolver"]
