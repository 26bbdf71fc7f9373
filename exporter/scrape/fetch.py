"""Fetch the data endpoints of one charger concurrently, under the deadline its poller (:mod:`exporter.scrape.poll`)
gives.

Nothing here raises and nothing here parses: every endpoint ends as an :class:`EndpointFetch` holding either the
body of a 200 reply or an error reason (:class:`Reason`) with a message that is safe to show (it never contains a
credential, and the device's own text in it, such as a reason phrase, is cleaned and cut by
:func:`exporter.scrape.devicetext.device_text`). :mod:`exporter.scrape.parse` turns the bodies into readings. The only
hosts ever contacted are the configured chargers' URLs; redirects are not followed.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import functools
import logging
import os
import ssl
import time
from contextlib import AbstractContextManager
from typing import Final, Protocol

import aiohttp
from aiohttp import hdrs
from aiohttp.abc import AbstractResolver
from yarl import URL

from exporter import __version__
from exporter.config import BasicAuth, BearerAuth, ChargerConfig
from exporter.scrape.devicetext import device_text
from exporter.scrape.logonce import OncePerKind
from exporter.scrape.results import ENDPOINTS, ChargerFetch, EndpointFetch, Reason

log = logging.getLogger("exporter.fetch")

MAX_BODY_BYTES: Final = 1 << 20
OUT_OF_FDS: Final = frozenset({errno.EMFILE, errno.ENFILE})  # this process's, or the whole system's, table is full
MIN_CONNECTIONS: Final = 100
USER_AGENT: Final = f"pulsatrix-exporter/{__version__}"
SESSION_HEADERS: Final = {"Accept": "application/json", "User-Agent": USER_AGENT}  # every request's, set once


def _ssl_for(charger: ChargerConfig) -> ssl.SSLContext | bool:
    if charger.tls is None or not charger.url.startswith("https:"):
        return True
    if charger.tls.insecure_skip_verify:
        return False
    if charger.tls.ca_file:
        stat = os.stat(charger.tls.ca_file)
        return _ca_context(charger.tls.ca_file, stat.st_mtime_ns, stat.st_size)
    return True


@functools.lru_cache(maxsize=32)
def _ca_context(ca_file: str, mtime_ns: int, size: int) -> ssl.SSLContext:
    """One context per CA file (and version of it), shared by the chargers that name it: loading a bundle blocks
    the event loop and holds memory per context, for each charger and at every reload."""
    return ssl.create_default_context(cafile=ca_file)


class DeadlineScope(Protocol):
    """What a fetch needs of its deadline (:class:`exporter.scrape.deadline.Deadline`, which the poller makes and
    extends): a scope that times out at it."""

    def scope(self) -> AbstractContextManager[None]: ...


class ChargerClient:
    """Everything needed to poll one charger, prepared once at start-up (headers, TLS context)."""

    def __init__(self, charger: ChargerConfig, session: aiohttp.ClientSession) -> None:
        self.charger = charger
        self._session = session
        self._ssl: ssl.SSLContext | bool = True
        self._setup_error = ""
        try:
            self._ssl = _ssl_for(charger)
        except (OSError, ssl.SSLError) as exc:  # the CA file changed since the config was checked
            self._setup_error = f"cannot load tls.ca_file: {_short(exc)}"
            log.error("charger %s: %s", charger.name, self._setup_error)
        headers: dict[str, str] = {}  # the charger's own; SESSION_HEADERS come from the session
        auth = charger.auth
        if isinstance(auth, BasicAuth):
            credentials = f"{auth.username}:{auth.password.reveal()}".encode()  # UTF-8, as RFC 7617 recommends
            headers["Authorization"] = f"Basic {base64.b64encode(credentials).decode('ascii')}"
        elif isinstance(auth, BearerAuth):
            headers["Authorization"] = f"Bearer {auth.token.reveal()}"
        self._headers = headers or None
        # Parsed once, not at every request.
        self._urls = {endpoint: URL(f"{charger.url}/api/v1/{endpoint}") for endpoint in ENDPOINTS}
        self._bugs = OncePerKind(log)

    def __repr__(self) -> str:
        return f"ChargerClient({self.charger.name!r})"

    async def fetch(self, deadline: DeadlineScope) -> ChargerFetch:
        """Fetch all endpoints concurrently; give up on each at ``deadline`` (which may be extended meanwhile)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        taken_at = time.time()
        # A task per endpoint, started in order, then awaited in order: what asyncio.gather does, without its
        # gathering future and a callback per task (a visible share of a poll's own CPU at thousands of chargers).
        tasks = [loop.create_task(self._endpoint(endpoint, deadline)) for endpoint in ENDPOINTS]
        results = []
        try:
            for task in tasks:
                results.append(await task)
        except BaseException:  # this poll was cancelled (a shutdown): so are its requests
            for task in tasks:
                task.cancel()
            raise
        return ChargerFetch(
            charger=self.charger,
            endpoints={r.endpoint: r for r in results},
            duration=loop.time() - start,
            taken_at=taken_at,
        )

    async def _endpoint(self, endpoint: str, deadline: DeadlineScope) -> EndpointFetch:
        """One endpoint's fetch, ended as an :class:`EndpointFetch` whatever happens. An unexpected error, even one
        raised while an expected one is handled, is the exporter's (counted as such and logged once), never the
        charger's, and never ends the other endpoints' fetches (a nested try: no coroutine of its own per request)."""
        try:
            if self._setup_error:
                return EndpointFetch(endpoint, reason=Reason.CONNECT, detail=self._setup_error)
            try:
                with deadline.scope():
                    body_or_error = await self._get(endpoint)
            except TimeoutError:
                return EndpointFetch(endpoint, reason=Reason.TIMEOUT, detail="no answer before the deadline")
            except aiohttp.ClientResponseError as exc:
                # The parser's error quotes the device's bytes.
                detail = f"bad HTTP response: {device_text(exc.message)}"
                return EndpointFetch(endpoint, reason=Reason.INVALID_PAYLOAD, detail=detail)
            except aiohttp.ClientSSLError as exc:  # os_error only: str(exc) would name the host
                return EndpointFetch(endpoint, reason=Reason.CONNECT, detail=f"TLS error: {_short(exc.os_error)}")
            except aiohttp.ClientConnectorError as exc:
                if exc.os_error.errno in OUT_OF_FDS:
                    return _out_of_fds(endpoint)
                return EndpointFetch(endpoint, reason=Reason.CONNECT, detail=f"cannot connect: {_short(exc.os_error)}")
            except (aiohttp.ClientError, OSError) as exc:
                if isinstance(exc, OSError) and exc.errno in OUT_OF_FDS:
                    return _out_of_fds(endpoint)
                return EndpointFetch(endpoint, reason=Reason.CONNECT, detail=f"{type(exc).__name__}: {_short(exc)}")
            if isinstance(body_or_error, EndpointFetch):
                return body_or_error
            return EndpointFetch(endpoint, body=body_or_error)
        except Exception as exc:
            self._bugs.error(self.charger.name, exc, "charger %s: %s: unexpected error", self.charger.name, endpoint)
            return EndpointFetch(endpoint, reason=Reason.EXPORTER_ERROR, detail=f"exporter error: {type(exc).__name__}")

    async def _get(self, endpoint: str) -> bytes | EndpointFetch:
        async with self._session.get(
            self._urls[endpoint], headers=self._headers, ssl=self._ssl, allow_redirects=False
        ) as response:
            if response.status in (401, 403):
                return EndpointFetch(
                    endpoint,
                    reason=Reason.UNAUTHORIZED,
                    detail=_status_detail(response),
                )
            if response.status == 404:
                return EndpointFetch(endpoint, reason=Reason.HTTP_STATUS, detail=_not_found(response, endpoint))
            if response.status != 200:
                return EndpointFetch(
                    endpoint,
                    reason=Reason.HTTP_STATUS,
                    detail=_status_detail(response),
                )
            length = response.content_length
            if length is not None and hdrs.CONTENT_ENCODING not in response.headers:
                # The common case: a plain body of known length, read at once (or refused unread).
                if length > MAX_BODY_BYTES:
                    return _too_large(endpoint)
                return await response.read()
            # Read to the end of the body (chunked, or compressed: the cap is on what it expands to), but never
            # more than the cap.
            body = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    return _too_large(endpoint)
            return bytes(body)


def _too_large(endpoint: str) -> EndpointFetch:
    return EndpointFetch(endpoint, reason=Reason.INVALID_PAYLOAD, detail=f"body larger than {MAX_BODY_BYTES} bytes")


def _out_of_fds(endpoint: str) -> EndpointFetch:
    """The exporter's own limit, never the charger's fault (and never ``connect``)."""
    return EndpointFetch(
        endpoint,
        reason=Reason.EXPORTER_FDS,
        detail="the exporter is out of file descriptors (Too many open files): raise its LimitNOFILE or lower "
        "--web.max-connections",
    )


def _status_detail(response: aiohttp.ClientResponse) -> str:
    """``HTTP 503 Service Unavailable``: the reason phrase is the device's text (:func:`device_text`)."""
    return f"HTTP {response.status} {device_text(response.reason or '')}".strip()


def _not_found(response: aiohttp.ClientResponse, endpoint: str) -> str:
    """A 404 is nearly always a wrong base URL (``http://host/api/v1``, a proxy's prefix missing): say which URL was
    asked for and how it is made. The URL is the configured one (never credentials: the config refuses them in a
    URL) with the path the exporter appends."""
    appended = f"/api/v1/{endpoint}"
    return f"{_status_detail(response)} for {response.url} (the exporter appends {appended} to the charger's url)"


def _short(exc: BaseException | None) -> str:
    """An exception's text, which may quote the device's bytes: cleaned and cut (:func:`device_text`)."""
    text = str(exc) if exc is not None else ""
    return device_text(text.strip() or type(exc).__name__)


def connection_limit(chargers: int, max_concurrency: int | None) -> int:
    """Sockets the client may hold: one per endpoint of every charger that may be polled at once."""
    polled_at_once = chargers if max_concurrency is None else min(chargers, max_concurrency)
    return max(MIN_CONNECTIONS, len(ENDPOINTS) * polled_at_once)


def make_session(
    chargers: int,
    resolver: AbstractResolver | None,
    *,
    keepalive_timeout: float,
    max_concurrency: int | None,
) -> aiohttp.ClientSession:
    """The HTTP client session shared by every charger. Deadlines are enforced per charger, not here.

    The pool has room for every endpoint of every charger polled at once, so that chargers that hang (and hold
    their connections until their deadline) can never make a healthy charger wait for a free connection. Polls are
    coalesced (:mod:`exporter.scrape.poll`), so a charger never has more than one connection per endpoint in use; idle
    ones are kept for ``keepalive_timeout`` seconds, longer than a scrape interval, so that each scrape reuses them
    instead of connecting (and shaking hands over TLS) again.
    """
    connector = aiohttp.TCPConnector(
        limit=connection_limit(chargers, max_concurrency),
        limit_per_host=0,
        ttl_dns_cache=300,
        resolver=resolver,
        keepalive_timeout=keepalive_timeout,
    )
    return aiohttp.ClientSession(
        connector=connector,
        headers=SESSION_HEADERS,
        # Chargers' cookies are never sent back: the exporter keeps no state between polls (and skips the jar's
        # work on every request and reply).
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=None),
        trust_env=False,
        auto_decompress=True,
        raise_for_status=False,
    )
