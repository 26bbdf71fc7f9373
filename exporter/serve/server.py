"""The exporter's own port under a hostile network: file descriptors, connection cap, idle clients, accept errors.

Anyone who reaches the port can open connections and leave them idle. Each costs the process a file descriptor,
and so do the chargers' connections (one per endpoint of every charger polled at once, 4 per charger). Without a
bound, 700 idle connections under a 1,024-fd limit (a common container default) made 22-39 of 100 healthy chargers
fail with "Too many open files", and every failed ``accept()`` logged a traceback (508,000 of them in 73 s).

- :func:`raise_fd_limit` raises the soft ``RLIMIT_NOFILE`` to the hard limit at start, as Go programs do (a
  refused ``setrlimit``, as under the shipped systemd unit, which already sets ``LimitNOFILE=65536``, is fine);
- :class:`ConnectionCap` bounds the connections to the port (:func:`default_max_connections`: 256, or what the fd
  limit leaves after the chargers' sockets and :data:`RESERVED_FDS`): at the cap, a new connection closes the
  oldest one that has no request in progress (an idle keep-alive, a client that never sent a full request), and
  is itself refused only when every connection is busy with a request; so idle clients can never keep a scrape
  out;
- idle and slow clients are closed after :data:`KEEPALIVE_TIMEOUT` without a complete request (aiohttp's
  ``keepalive_timeout``, which it also applies before the first request and to headers sent slowly; a parameter of
  :func:`run`);
- :class:`AcceptErrors` logs a failed ``accept()`` (out of fds anyway) once per minute with a count, instead of
  asyncio's traceback per attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import math
import resource
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from exporter.serve.bind import DEFAULT_MAX_CONNECTIONS, RESERVED_FDS

log = logging.getLogger("exporter.serve")

MIN_MAX_CONNECTIONS: Final = 16
KEEPALIVE_TIMEOUT: Final = 30.0  # aiohttp's default is 75 s; a 15 s scrape interval still reuses its connection
ACCEPT_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def raise_fd_limit() -> int:
    """Raise the soft fd limit to the hard one; return the soft limit in force. Never fails."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 20  # Linux never has more (fs.nr_open)
    if hard == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError) as exc:  # e.g. EPERM under systemd's SystemCallFilter=~@resources
        log.debug("fd limit stays at %d (cannot raise it to %d: %s)", soft, hard, exc)
        return soft
    log.debug("fd limit raised from %d to %d", soft, hard)
    return hard


def default_max_connections(fd_limit: int, charger_sockets: int) -> int:
    """256, or what ``fd_limit`` leaves after the chargers' sockets and the reserve, but at least 16."""
    return max(MIN_MAX_CONNECTIONS, min(DEFAULT_MAX_CONNECTIONS, fd_limit - RESERVED_FDS - charger_sockets))


class ConnectionCap:
    """At most ``limit`` connections to the port; at the cap the oldest connection without a request in
    progress makes room, and a new connection is refused only when all of them are busy."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[RequestHandler, asyncio.Transport] = {}  # oldest first
        self.closed_idle = 0  # idle connections closed to make room (for tests and curiosity)
        self.refused = 0

    def __repr__(self) -> str:
        return f"ConnectionCap({len(self._open)} of {self.limit})"

    def install(self, server: web.Server) -> None:
        """Wrap ``server``'s connection bookkeeping (each aiohttp connection reports to it)."""
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler: RequestHandler, transport: asyncio.Transport) -> None:
            made(handler, transport)
            if len(self._open) >= self.limit and not self._close_oldest_idle():
                self.refused += 1
                transport.abort()
                return
            self._open[handler] = transport

        def connection_lost(handler: RequestHandler, exc: BaseException | None = None) -> None:
            self._open.pop(handler, None)
            lost(handler, exc)

        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign]

    def _close_oldest_idle(self) -> bool:
        for handler, transport in self._open.items():
            # aiohttp sets this from the request's first byte handled to the response's last byte written;
            # without it (another aiohttp), every connection counts as busy and the cap only refuses.
            if not getattr(handler, "_request_in_progress", True):
                del self._open[handler]
                self.closed_idle += 1
                transport.abort()  # at once: its descriptor is needed now
                return True
        return False


class AcceptErrors:
    """A loop exception handler: ``accept()`` out of descriptors is logged once per :attr:`INTERVAL` with a
    count (asyncio retries it after 1 s); everything else goes to the default handler."""

    INTERVAL = 60.0

    def __init__(self, fd_limit: int) -> None:
        self.fd_limit = fd_limit
        self.clock = time.monotonic
        self._logged_at = -math.inf
        self._count = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if not (isinstance(exc, OSError) and exc.errno in ACCEPT_ERRNOS and "accept" in context.get("message", "")):
            loop.default_exception_handler(context)
            return
        self._count += 1
        now = self.clock()
        if now - self._logged_at < self.INTERVAL:
            return
        log.error(
            "cannot accept connections on the exporter's port: %s (%d time(s) since the last such line; fd limit "
            "%d): raise LimitNOFILE or lower --web.max-connections",
            exc.strerror or exc,
            self._count,
            self.fd_limit,
        )
        self._logged_at, self._count = now, 0


def run(
    make_app: Awaitable[web.Application],
    sockets: Sequence[socket.socket],
    *,
    ssl_context: ssl.SSLContext | None,
    shutdown_timeout: float,
    max_connections: int,
    fd_limit: int,
    on_listening: Callable[[], None] = lambda: None,
    new_loop: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop,
    keepalive_timeout: float = KEEPALIVE_TIMEOUT,
) -> None:
    """Serve until SIGINT or SIGTERM, as :func:`aiohttp.web.run_app` does, with the port's connections capped.
    A connection without a complete request for ``keepalive_timeout`` seconds is closed (the exporter keeps the
    default; tests shorten it so as not to wait 30 s)."""

    async def serve() -> None:
        asyncio.get_running_loop().set_exception_handler(AcceptErrors(fd_limit))
        app = await make_app
        runner = web.AppRunner(
            app,
            handle_signals=True,
            access_log=None,
            shutdown_timeout=shutdown_timeout,
            keepalive_timeout=keepalive_timeout,
        )
        await runner.setup()
        try:
            assert runner.server is not None  # noqa: S101 - set by setup()
            ConnectionCap(max_connections).install(runner.server)
            for sock in sockets:  # bound by the caller, so that a bind error is reported before anything starts
                await web.SockSite(runner, sock, ssl_context=ssl_context).start()
            on_listening()
            await asyncio.Event().wait()  # until a signal raises GracefulExit
        finally:
            await runner.cleanup()

    loop = new_loop()
    main = loop.create_task(serve())
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        main.cancel()
        with contextlib.suppress(asyncio.CancelledError, web.GracefulExit):
            loop.run_until_complete(main)
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        asyncio.set_event_loop(None)
        loop.close()
