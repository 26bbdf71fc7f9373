"""Bind the listening sockets before serving, so that a port in use is one line and exit 1, not a traceback.

``aiohttp.web.run_app(host=, port=)`` binds inside the running app, after the start-up log; a port in use ends it
with a 20-line ``OSError`` traceback. :func:`bind` binds first (every address the host name resolves to, as
asyncio's ``create_server`` does), and raises :class:`BindError` with one line naming the address and the cause.
``run_app(sock=...)`` then serves on those sockets, and the start-up log can say the port actually bound (a real
one for ``:0``).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence
from typing import Final

# The exporter's own port: connections at once by default (exporter.serve.server caps them), and the descriptors kept
# free for everything else: the listening socket, epoll, the log, config and secret files, the threads' DNS
# sockets, TLS files, /proc reads of the process collector (~20 at rest, 64 with room).
DEFAULT_MAX_CONNECTIONS: Final = 256
RESERVED_FDS: Final = 64

# asyncio's default backlog (100) for the exporter; the simulator passes its own.
DEFAULT_BACKLOG = 100

CAUSES = {
    errno.EADDRINUSE: "address already in use: another process listens on this port",
    errno.EACCES: "permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE",
    errno.EPERM: "permission denied",
    errno.EADDRNOTAVAIL: "address not available: no interface of this host has it",
}


class BindError(Exception):
    """Listening on an address failed; ``str()`` is the one line to show."""


def show_address(host: str, port: int) -> str:
    """``HOST:PORT``, an IPv6 literal in brackets: ``[::1]:9821``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def url(scheme: str, sock: socket.socket) -> str:
    """Where a socket listens, as a URL: ``http://127.0.0.1:40321``, ``http://[::1]:9821``."""
    host, port = sock.getsockname()[:2]
    return f"{scheme}://{show_address(host, port)}"


def _cause(exc: OSError, in_use_hint: str = "") -> str:
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name: {exc.strerror or exc}"
    if exc.errno == errno.EADDRINUSE and in_use_hint:
        return f"{CAUSES[exc.errno]} ({in_use_hint})"
    if exc.errno in CAUSES:
        return CAUSES[exc.errno]
    return exc.strerror or str(exc)


def bind(host: str, port: int, *, backlog: int = DEFAULT_BACKLOG, in_use_hint: str = "") -> list[socket.socket]:
    """Listening sockets for every address ``host`` resolves to; raises :class:`BindError` (none left open)."""
    where = show_address(host, port)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        cause = _cause(exc) if isinstance(exc, OSError) else "not a valid host name"
        raise BindError(f"cannot listen on {where}: {cause}") from None
    sockets: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, type_, proto, _, sockaddr in infos:
            if (family, sockaddr[:2]) in seen:
                continue
            seen.add((family, sockaddr[:2]))
            address = tuple(sockaddr)
            if sockets and port == 0:  # ":0" on several addresses: one port for all, as a client expects
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sockets.append(_listen(family, type_, proto, address, backlog))
    except OSError as exc:
        for sock in sockets:
            sock.close()
        shown = show_address(str(exc.filename), port) if getattr(exc, "filename", None) else where
        raise BindError(f"cannot listen on {shown}: {_cause(exc, in_use_hint)}") from None
    return sockets


def _listen(family: int, type_: int, proto: int, sockaddr: Sequence[object], backlog: int) -> socket.socket:
    sock = socket.socket(family, type_, proto)
    try:
        # As asyncio's create_server does: a restart may bind while old connections linger in TIME_WAIT, and an
        # IPv6 socket does not take the IPv4 addresses of the same name too (they get a socket of their own).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind(tuple(sockaddr))
        except OSError as exc:
            exc.filename = str(sockaddr[0])  # which of the name's addresses failed
            raise
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


__all__ = ["DEFAULT_BACKLOG", "BindError", "bind", "show_address", "url"]
