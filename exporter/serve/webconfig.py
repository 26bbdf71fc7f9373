"""The web config at run time: TLS whose certificate and key follow their files, and the web config read again on
reload. (Reading and checking the file is :mod:`exporter.config.web`.)"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from exporter.config.web import TLSServerConfig, WebConfig, WebConfigError, load_web_config
from exporter.serve.auth import BasicAuthGate

log = logging.getLogger("exporter.webconfig")

# How often a handshake may look at the certificate and key files: two stat() calls, at most once a second, so a
# renewal is served within a second of the files' replacement and a flood of handshakes costs no disk reads.
CERT_CHECK_INTERVAL = 1.0

Stamp = tuple[tuple[int, int, int], ...] | None  # (mtime_ns, size, inode) of cert and key; None: unreadable


class RenewingTLS:
    """The server's ``SSLContext``, whose certificate and key follow their files.

    The context given to the listening socket keeps an ``sni_callback``, which OpenSSL runs for every ClientHello
    (with or without a server name): at most once every ``CERT_CHECK_INTERVAL`` it stats the two files, and when
    their (mtime, size, inode) changed it loads them into a fresh context; each new handshake then continues on the
    newest good context (``SSLObject.context``). Connections already open keep theirs, so nothing in flight drops. A
    pair that does not load (a key that does not match, a file half-written) keeps the previous context and is
    logged once until the files change again.
    """

    def __init__(
        self, tls: TLSServerConfig, context: ssl.SSLContext, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.tls = tls
        self.context = context  # the one the socket serves with; never replaced itself
        self.current = context  # the newest context that loaded
        self._clock = clock
        self._stamp = self._stat()
        self._failed: Stamp | object = object()  # the stamp of the last pair that did not load (logged once)
        self._checked = clock()
        context.sni_callback = self._hello

    def _stat(self) -> Stamp:
        try:
            stats = [os.stat(self.tls.cert_file), os.stat(self.tls.key_file)]
        except OSError:
            return None
        return tuple((st.st_mtime_ns, st.st_size, st.st_ino) for st in stats)

    def _hello(self, connection: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _ctx: ssl.SSLContext) -> None:
        try:
            self.check()
            if self.current is not self.context:
                connection.context = self.current
        except Exception:  # never fail a handshake because of the renewal: it goes on with the old certificate
            log.exception("TLS: cannot check the certificate files")

    def check(self, *, force: bool = False) -> None:
        """Load the files again if they changed (at most once per interval unless ``force``)."""
        now = self._clock()
        if not force and now - self._checked < CERT_CHECK_INTERVAL:
            return
        self._checked = now
        stamp = self._stat()
        if stamp in (self._stamp, self._failed):
            return
        try:
            fresh = self.tls.ssl_context()
        except (ssl.SSLError, OSError, ValueError) as exc:
            self._failed = stamp
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
            log.error(
                "TLS: the changed certificate and key (%s, %s) do not load, the running ones stay: %s",
                self.tls.cert_file,
                self.tls.key_file,
                reason,
            )
            return
        self.current, self._stamp = fresh, stamp
        log.info("TLS: certificate and key loaded again from %s", self.tls.cert_file)

    def use(self, tls: TLSServerConfig) -> None:
        """Follow the files of a reloaded web config (same settings, maybe other paths)."""
        if tls != self.tls:
            self.tls, self._stamp = tls, object()  # type: ignore[assignment]  # differs from any stamp
            self.check(force=True)


class LiveWebConfig:
    """The web config the exporter serves with, read again on reload (``SIGHUP``, ``POST /-/reload``).

    ``basic_auth_users`` take effect at once in :attr:`gate` (the basic-auth middleware that checks them: given, or
    made from ``config``'s users), and so do the certificate and key files; switching TLS on or off, or changing its
    other settings (client auth, versions), needs a restart and is said so. A file with a problem keeps the running
    web config.
    """

    def __init__(self, path: str | Path, config: WebConfig, gate: BasicAuthGate | None = None) -> None:
        self.path = path
        self.config = config
        self.gate = gate if gate is not None else BasicAuthGate(config.users)
        self.tls = (
            RenewingTLS(config.tls, config.ssl_context)
            if config.tls is not None and config.ssl_context is not None
            else None
        )

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        return self.tls.context if self.tls is not None else None

    def reload(self) -> str:
        """Re-read the file; a one-line account of what happened (logged too)."""
        try:
            new = load_web_config(self.path)
        except WebConfigError as exc:
            log.error("web config reload rejected, the running one stays: %s: %s", exc.source, "; ".join(exc.problems))
            return f"web config rejected, the running one stays: {exc.message()}"
        old = self.config
        notes = []
        if (new.tls is None) != (old.tls is None) or (
            new.tls is not None
            and old.tls is not None
            and replace(new.tls, cert_file="", key_file="") != replace(old.tls, cert_file="", key_file="")
        ):
            notes.append("its TLS settings other than cert_file and key_file need a restart")
            new = replace(new, tls=old.tls, ssl_context=old.ssl_context)
        elif self.tls is not None and new.tls is not None:
            self.tls.use(new.tls)
        self.gate.set_users(new.users)
        self.config = new
        message = new.summary() + (f" ({'; '.join(notes)})" if notes else "")
        (log.warning if notes else log.info)("web config reloaded: %s", message)
        return f"web config {message}"


__all__ = ["LiveWebConfig", "RenewingTLS"]
