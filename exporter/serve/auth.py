"""Basic auth on the exporter's own port: the users and bcrypt hashes of ``--web.config.file``
(:mod:`exporter.config.web` reads them) checked as an aiohttp middleware, :class:`BasicAuthGate`.

Not to be confused with :class:`exporter.config.BasicAuth`, the credentials the exporter sends *to* a charger.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import hashlib
import hmac
import ipaddress
import os
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import bcrypt
from aiohttp import hdrs, web

from exporter.config.reader import Secret

# Paths a load balancer, kubelet or container runtime must reach without credentials.
OPEN_PATHS = frozenset({"/-/healthy", "/-/ready"})
REALM = "pulsatrix-exporter"


class TooManyChecks(Exception):
    """This client (or all clients together) has as many password checks waiting or spent as it may."""


@dataclass(slots=True)
class _Client:
    """One client address's share of the bcrypt threads: its checks waiting, and its budget for failed ones."""

    tokens: float
    refilled: float  # monotonic time of the last refill
    pending: int = 0
    queue: deque[_Check] = field(default_factory=deque)


@dataclass(slots=True)
class _Check:
    digest: bytes
    user: str
    password: bytes
    client: _Client
    future: asyncio.Future[bool]
    generation: int  # the users it was checked against (see set_users)


class BasicAuthGate:
    """Checks ``Authorization: Basic`` against bcrypt hashes, off the event loop and at most once per credential.

    bcrypt costs ~60 ms of CPU at cost 10 by design, so anyone who reaches the port could keep the CPU busy with
    made-up passwords, or keep a real user out. Here:

    - a verified (user, password) pair is remembered, keyed by an HMAC under a per-process random key (the password
      itself is not kept), in a bounded LRU; so is a refused pair, for ``FAILED_TTL`` seconds: a client that repeats
      one wrong password costs one bcrypt run a minute, not a core;
    - concurrent requests with the same credentials share one check (a /probe job of 200 chargers: one bcrypt run);
    - the checks of new credentials are queued per client address (an IPv6 address by its /64) and run round-robin
      in two threads of their own: a real user's check never waits behind another address's guesses, only behind
      the at most two checks running;
    - an address may have ``MAX_PENDING_PER_ADDRESS`` checks waiting and spend ``GUESS_BURST`` failed checks at
      once, then ``GUESS_RATE`` per second (a right password refunds its cost); past that it gets 429 at once, as
      it does when ``MAX_PENDING`` checks wait in all. Guesses cost at most 30 bcrypt runs a minute per address;
    - an unknown user is checked against the hash of the costliest configured user (and refused whatever the
      result), so that timing does not tell which user names exist.
    """

    CACHE_SIZE = 256
    FAILED_CACHE_SIZE = 4096
    FAILED_TTL = 60.0
    MAX_PENDING = 256
    MAX_PENDING_PER_ADDRESS = 4
    GUESS_BURST = 10.0
    GUESS_RATE = 0.5
    THREADS = 2
    MAX_CLIENTS = 4096

    def __init__(self, users: tuple[tuple[str, Secret], ...]) -> None:
        self._key = os.urandom(32)
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        self._failed: OrderedDict[bytes, float] = OrderedDict()  # digest -> monotonic time it is forgotten
        self._pending: dict[bytes, asyncio.Future[bool]] = {}
        self._generation = 0
        self.set_users(users)
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self._turns: OrderedDict[str, None] = OrderedDict()  # addresses with checks queued, in round-robin order
        self._running = 0
        self._executor = ThreadPoolExecutor(max_workers=self.THREADS, thread_name_prefix="bcrypt")
        self.clock = time.monotonic
        self.bcrypt_runs = 0  # how often bcrypt actually ran (for tests and curiosity)

    def set_users(self, users: tuple[tuple[str, Secret], ...]) -> None:
        """The users of a reloaded web config; none: every request passes (as without basic_auth_users). What was
        verified or refused is forgotten, so a removed user or a changed password is refused, and a new password
        accepted, from the next request on."""
        self._hashes = {name: hashed.reveal().encode() for name, hashed in users}
        self._dummy = max(self._hashes.values(), key=lambda h: int(h[4:6]), default=b"")
        self._verified.clear()
        self._failed.clear()
        self._pending = {}  # checks under way finish for their requests; new requests are checked anew
        self._generation += 1  # a check begun before is not remembered

    def _bcrypt(self, user: str, password: bytes) -> bool:
        hashed = self._hashes.get(user)
        if hashed is None and not self._dummy:
            return False
        try:
            ok = bcrypt.checkpw(password, hashed or self._dummy)
        except ValueError:  # longer than bcrypt's 72 bytes: no hash was made from it
            return False
        return ok and hashed is not None

    async def verify(self, user: str, password: str, address: str = "") -> bool:
        """True for a known user's right password; raises :class:`TooManyChecks` when ``address`` (the client's)
        or all clients have as many checks waiting or spent as they may."""
        secret = password.encode()
        digest = hmac.new(self._key, user.encode() + b"\0" + secret, hashlib.sha256).digest()
        if digest in self._verified:
            self._verified.move_to_end(digest)
            return True
        now = self.clock()
        forgotten_at = self._failed.get(digest)
        if forgotten_at is not None:
            if forgotten_at > now:
                return False
            del self._failed[digest]
        future = self._pending.get(digest)
        if future is None:
            future = self._queue(digest, user, secret, _address_key(address), now)
        # shield: a client that goes away must not cancel the check others wait for
        return await asyncio.shield(future)

    def _queue(self, digest: bytes, user: str, secret: bytes, key: str, now: float) -> asyncio.Future[bool]:
        client = self._client(key, now)
        if len(self._pending) >= self.MAX_PENDING or client.pending >= self.MAX_PENDING_PER_ADDRESS:
            raise TooManyChecks
        if client.tokens < 1.0:
            raise TooManyChecks
        client.tokens -= 1.0  # paid up front, so that checks in flight count too; a right password refunds it
        client.pending += 1
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending[digest] = future
        client.queue.append(_Check(digest, user, secret, client, future, self._generation))
        self._turns[key] = None
        self._dispatch()
        return future

    def _client(self, key: str, now: float) -> _Client:
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = _Client(tokens=self.GUESS_BURST, refilled=now)
            self._forget_idle_clients()
        else:
            client.tokens = min(self.GUESS_BURST, client.tokens + (now - client.refilled) * self.GUESS_RATE)
            client.refilled = now
            self._clients.move_to_end(key)
        return client

    def _forget_idle_clients(self) -> None:
        """Keep at most MAX_CLIENTS addresses, forgetting the least recently seen that have nothing waiting (one
        that is forgotten starts again with a full budget, which a flood from many addresses has anyway)."""
        excess = len(self._clients) - self.MAX_CLIENTS
        if excess <= 0:
            return
        for key in [k for k, c in self._clients.items() if not c.pending][:excess]:
            del self._clients[key]

    def _dispatch(self) -> None:
        """Start queued checks, one address after the other, while a bcrypt thread is free."""
        loop = asyncio.get_running_loop()
        while self._running < self.THREADS and self._turns:
            key = next(iter(self._turns))
            client = self._clients[key]
            check = client.queue.popleft()
            del self._turns[key]
            if client.queue:
                self._turns[key] = None  # to the back of the round
            self._running += 1
            self.bcrypt_runs += 1
            running = loop.run_in_executor(self._executor, self._bcrypt, check.user, check.password)
            running.add_done_callback(functools.partial(self._done, check))

    def _done(self, check: _Check, done: asyncio.Future[bool]) -> None:
        self._running -= 1
        check.client.pending -= 1
        if self._pending.get(check.digest) is check.future:
            del self._pending[check.digest]
        ok = not done.cancelled() and done.exception() is None and done.result()
        current = check.generation == self._generation  # checked against the users still configured
        if ok:
            check.client.tokens = min(self.GUESS_BURST, check.client.tokens + 1.0)
            if current:
                self._verified[check.digest] = None
            while len(self._verified) > self.CACHE_SIZE:
                self._verified.popitem(last=False)
        elif not done.cancelled() and current:
            self._failed[check.digest] = self.clock() + self.FAILED_TTL
            self._failed.move_to_end(check.digest)
            while len(self._failed) > self.FAILED_CACHE_SIZE:
                self._failed.popitem(last=False)
        if not check.future.done():
            check.future.set_result(bool(ok))
        with contextlib.suppress(RuntimeError):  # the loop is closing: nothing more to start
            self._dispatch()

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path in OPEN_PATHS or not self._hashes:
            return await handler(request)
        credentials = _basic_credentials(request.headers.get(hdrs.AUTHORIZATION, ""))
        try:
            verified = credentials is not None and await self.verify(*credentials, request.remote or "")
        except TooManyChecks:
            return web.Response(
                status=429,
                text="429 Too Many Requests: too many password checks from this address; try again shortly\n",
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


def _address_key(address: str) -> str:
    """The unit a budget is kept for: an IPv4 address, or an IPv6 address's /64 (one host often has all of it)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


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
