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
import ipaddress
import logging
import math
import resource
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, Final

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from prometheus_client.core import CounterMetricFamily

from exporter.catalogue import BY_NAME
from exporter.serve.app import EXPORTER
from exporter.serve.bind import DEFAULT_MAX_CONNECTIONS, RESERVED_FDS

log = logging.getLogger("exporter.serve")

MIN_MAX_CONNECTIONS: Final = 16
KEEPALIVE_TIMEOUT: Final = 30.0  # aiohttp's default is 75 s; a 15 s scrape interval still reuses its connection
ACCEPT_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
REFUSED_METRIC: Final = "pulsatrix_exporter_connections_refused_total"


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


def client_key(transport: asyncio.BaseTransport) -> str:
    """Whose connection this is, for the per-client budget: the peer's IP address, an IPv6 one by its /64 (one host
    or network usually holds a whole /64; an IPv4-mapped one as IPv4)."""
    peer = transport.get_extra_info("peername")
    host = peer[0] if isinstance(peer, tuple) and peer else ""
    try:
        address = ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        return str(host) or "?"  # a Unix socket, or something the loop could not name
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class ConnectionCap:
    """At most :attr:`limit` connections to the port, shared fairly between client addresses.

    At the cap, a new connection from address A is taken in place of, in this order: the oldest connection of A
    without a request in progress (A replacing its own idle keep-alive); else one of the address B holding the most
    connections, when B holds more than one more than A: B's oldest idle connection, or else B's oldest busy one
    (*cut*: its request gets no answer). Otherwise it is *refused*: A already holds its share and all of it is busy.
    So 300 clients of one address re-requesting a hung charger cannot keep a scraper at another address out, and
    idle clients never keep anyone out. Refusals and cuts are counted (:meth:`collect`, the exporter's
    ``pulsatrix_exporter_connections_refused_total``) and logged at most once per :attr:`LOG_INTERVAL` with a count.

    Closing a connection aiohttp has only just accepted is deferred by two turns of the event loop: until its request
    handler has started (Python < 3.12 starts it one turn later), otherwise aborting it logs "Task exception was
    never retrieved ... AssertionError" from aiohttp's handler (36,911 lines in 30 s under 260 busy clients).

    ``limit`` is fixed (``--web.max-connections``) or, by default (None), :func:`default_max_connections` of
    ``fd_limit`` and the chargers' sockets as they are now (``charger_sockets``): an ``/sd``-sharded replica that
    holds a 10,000-charger config but polls only its share keeps room for 256 connections.
    """

    LOG_INTERVAL = 60.0

    def __init__(
        self,
        limit: int | None,
        *,
        fd_limit: int = 1 << 20,
        charger_sockets: Callable[[], int] = lambda: 0,
    ) -> None:
        self._fixed = limit
        self._fd_limit = fd_limit
        self._charger_sockets = charger_sockets
        self._open: dict[RequestHandler, tuple[asyncio.Transport, str]] = {}  # oldest first
        self._by_client: dict[str, dict[RequestHandler, asyncio.Transport]] = {}  # each oldest first
        self.closed_idle = 0  # idle connections closed to make room (for tests and curiosity)
        self.refused = 0  # new connections refused: every connection busy, and their address holds its share
        self.cut = 0  # busy connections closed to make room for another address
        self.clock = time.monotonic
        self._logged_at = -math.inf
        self._unlogged: dict[str, int] = {}  # address -> refused or cut since the last line

    def __repr__(self) -> str:
        return f"ConnectionCap({len(self._open)} of {self.limit}, {len(self._by_client)} clients)"

    @property
    def limit(self) -> int:
        if self._fixed is not None:
            return self._fixed
        return default_max_connections(self._fd_limit, self._charger_sockets())

    def install(self, server: web.Server) -> None:
        """Wrap ``server``'s connection bookkeeping (each aiohttp connection reports to it)."""
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler: RequestHandler, transport: asyncio.Transport) -> None:
            made(handler, transport)
            key = client_key(transport)
            if len(self._open) >= self.limit and not self._make_room(key):
                self.refused += 1
                self._note(key)
                transport.pause_reading()  # its request, if sent already, is never handled
                _abort_soon(transport)
                return
            self._open[handler] = (transport, key)
            self._by_client.setdefault(key, {})[handler] = transport

        def connection_lost(handler: RequestHandler, exc: BaseException | None = None) -> None:
            self._forget(handler)
            lost(handler, exc)

        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign]

    def _make_room(self, key: str) -> bool:
        own = self._by_client.get(key, {})
        if self._close(own, idle_only=True):
            return True
        biggest = max(self._by_client, key=lambda k: len(self._by_client[k]), default=None)
        if biggest is None or biggest == key or len(self._by_client[biggest]) <= len(own) + 1:
            return False
        theirs = self._by_client[biggest]
        if self._close(theirs, idle_only=True):
            return True
        self.cut += 1
        self._note(biggest)
        return self._close(theirs, idle_only=False)

    def _close(self, connections: dict[RequestHandler, asyncio.Transport], *, idle_only: bool) -> bool:
        """Close the oldest of ``connections`` (without a request in progress, with ``idle_only``)."""
        for handler, transport in connections.items():
            # aiohttp sets this from the request's first byte handled to the response's last byte written;
            # without it (another aiohttp), every connection counts as busy and the cap only refuses.
            if idle_only and getattr(handler, "_request_in_progress", True):
                continue
            self._forget(handler)
            if idle_only:
                self.closed_idle += 1
            _abort_soon(transport)
            return True
        return False

    def _forget(self, handler: RequestHandler) -> None:
        entry = self._open.pop(handler, None)
        if entry is None:
            return
        key = entry[1]
        theirs = self._by_client.get(key)
        if theirs is not None:
            theirs.pop(handler, None)
            if not theirs:
                del self._by_client[key]

    def _note(self, key: str) -> None:
        """Count one refused or cut connection of ``key``; one log line per LOG_INTERVAL, with the count."""
        self._unlogged[key] = self._unlogged.get(key, 0) + 1
        now = self.clock()
        if now - self._logged_at < self.LOG_INTERVAL:
            return
        total = sum(self._unlogged.values())
        top, most = max(self._unlogged.items(), key=lambda item: item[1])
        log.warning(
            "connection cap of %d reached: %d connection(s) refused or cut since the last such line, %d of them "
            "from %s (each client address gets a share of the cap; raise --web.max-connections if these are your "
            "scrapers)",
            self.limit,
            total,
            most,
            top,
        )
        self._logged_at, self._unlogged = now, {}

    def collect(self) -> Iterator[CounterMetricFamily]:
        """``pulsatrix_exporter_connections_refused_total``, for the exporter's own registry."""
        spec = BY_NAME[REFUSED_METRIC]
        family = CounterMetricFamily(REFUSED_METRIC.removesuffix("_total"), spec.help)
        family.add_metric([], float(self.refused + self.cut))
        yield family


def _abort_soon(transport: asyncio.Transport) -> None:
    """Abort after aiohttp's handler of the connection has started (see :class:`ConnectionCap`)."""
    loop = asyncio.get_running_loop()
    loop.call_soon(loop.call_soon, transport.abort)


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
    max_connections: int | None,
    fd_limit: int,
    on_listening: Callable[[], None] = lambda: None,
    new_loop: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop,
    keepalive_timeout: float = KEEPALIVE_TIMEOUT,
) -> None:
    """Serve until SIGINT or SIGTERM, as :func:`aiohttp.web.run_app` does, with the port's connections capped
    (at ``max_connections``, or by default at what ``fd_limit`` leaves after the sockets of the chargers polled).
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
            exporter = app.get(EXPORTER)
            cap = ConnectionCap(
                max_connections,
                fd_limit=fd_limit,
                charger_sockets=exporter.fleet.sockets_in_use if exporter is not None else lambda: 0,
            )
            cap.install(runner.server)
            if exporter is not None:
                exporter.registry.register(cap)  # served with the process metrics, on /metrics and /-/metrics
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
