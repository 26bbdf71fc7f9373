"""Basic auth on the exporter's own port: the users and bcrypt hashes of ``--web.config.file``
(:mod:`exporter.webconfig` reads them) checked as an aiohttp middleware, :class:`BasicAuthGate`.

Not to be confused with :class:`exporter.config.BasicAuth`, the credentials the exporter sends *to* a charger.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import bcrypt
from aiohttp import hdrs, web

from exporter.schema import Secret

# Paths a load balancer, kubelet or container runtime must reach without credentials.
OPEN_PATHS = frozenset({"/-/healthy", "/-/ready"})
REALM = "pulsatrix-exporter"


class TooManyChecks(Exception):
    """``BasicAuthGate.MAX_PENDING`` password checks are already waiting for bcrypt."""


class BasicAuthGate:
    """Checks ``Authorization: Basic`` against bcrypt hashes, off the event loop and at most once per credential.

    bcrypt costs ~70 ms of CPU at cost 10 by design. A verified (user, password) pair is remembered, keyed by an
    HMAC under a per-process random key (the password itself is not kept), in a bounded LRU; concurrent requests
    with the same credentials share one verification, so a /probe job of 200 chargers costs one bcrypt run, not
    200. Failures are not cached. An unknown user is checked against the hash of the costliest configured user (and
    refused whatever the result), so that timing does not tell which user names exist. bcrypt runs in two threads
    of its own, so a flood of wrong passwords cannot starve the default executor the HTTP client resolves host
    names in; at most ``MAX_PENDING`` different credentials wait for a check at once, further ones are answered 429
    at once (a flood of made-up passwords would otherwise queue CPU work and requests without bound).
    """

    CACHE_SIZE = 256
    MAX_PENDING = 64

    def __init__(self, users: tuple[tuple[str, Secret], ...]) -> None:
        self._key = os.urandom(32)
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        self._pending: dict[bytes, asyncio.Future[bool]] = {}
        self.set_users(users)
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="bcrypt")
        self.bcrypt_runs = 0  # how often bcrypt actually ran (for tests and curiosity)

    def set_users(self, users: tuple[tuple[str, Secret], ...]) -> None:
        """The users of a reloaded web config; none: every request passes (as without basic_auth_users). What was
        verified is forgotten, so a removed user or a changed password is refused from the next request on."""
        self._hashes = {name: hashed.reveal().encode() for name, hashed in users}
        self._dummy = max(self._hashes.values(), key=lambda h: int(h[4:6]), default=b"")
        self._verified.clear()
        self._pending = {}  # checks under way finish for their requests; new requests are checked anew
        self._generation = getattr(self, "_generation", 0) + 1  # a check begun before is not remembered

    def _bcrypt(self, user: str, password: bytes) -> bool:
        hashed = self._hashes.get(user)
        if hashed is None and not self._dummy:
            return False
        try:
            ok = bcrypt.checkpw(password, hashed or self._dummy)
        except ValueError:  # longer than bcrypt's 72 bytes: no hash was made from it
            return False
        return ok and hashed is not None

    async def verify(self, user: str, password: str) -> bool:
        """True for a known user's right password; raises :class:`TooManyChecks` when MAX_PENDING checks wait."""
        secret = password.encode()
        digest = hmac.new(self._key, user.encode() + b"\0" + secret, hashlib.sha256).digest()
        if digest in self._verified:
            self._verified.move_to_end(digest)
            return True
        future = self._pending.get(digest)
        if future is None:
            if len(self._pending) >= self.MAX_PENDING:
                raise TooManyChecks
            self.bcrypt_runs += 1
            future = asyncio.get_running_loop().run_in_executor(self._executor, self._bcrypt, user, secret)
            self._pending[digest] = future
            generation = self._generation
            future.add_done_callback(lambda f: self._done(digest, f, generation))
        # shield: a client that goes away must not cancel the check others wait for
        return await asyncio.shield(future)

    def _done(self, digest: bytes, future: asyncio.Future[bool], generation: int) -> None:
        if self._pending.get(digest) is future:
            del self._pending[digest]
        ok = not future.cancelled() and future.exception() is None and future.result()
        if ok and generation == self._generation:
            self._verified[digest] = None
            while len(self._verified) > self.CACHE_SIZE:
                self._verified.popitem(last=False)

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path in OPEN_PATHS or not self._hashes:
            return await handler(request)
        credentials = _basic_credentials(request.headers.get(hdrs.AUTHORIZATION, ""))
        try:
            verified = credentials is not None and await self.verify(*credentials)
        except TooManyChecks:
            return web.Response(
                status=429,
                text="429 Too Many Requests: too many password checks in progress; try again shortly\n",
                headers={hdrs.RETRY_AFTER: "1"},
            )
        if not verified:
            return web.Response(
                status=401,
                text="401 Unauthorized: this exporter needs a user name and password (HTTP basic auth)\n",
                headers={hdrs.WWW_AUTHENTICATE: f'Basic realm="{REALM}", charset="UTF-8"'},
            )
        return await handler(request)

    async def close(self, _: web.Application | None = None) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None



__all__ = ["OPEN_PATHS", "BasicAuthGate", "TooManyChecks"]
