"""A request aiohttp cannot parse is logged in one line, never with its bytes (they may hold a password)."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Iterator

import bcrypt
import pytest

from exporter.cli import setup_logging
from exporter.config import Secret
from exporter.serve.auth import BasicAuthGate
from exporter.serve.serverlog import MalformedRequestFilter
from tests.support.auth import serve_protected
from tests.support.fleet import ServerFactory

PASSWORD = "Sup3rSecretPassw0rd"


@pytest.fixture
def cli_logging() -> Iterator[None]:
    setup_logging("debug")  # as the command does (basicConfig itself is a no-op under pytest)
    yield
    logger = logging.getLogger("aiohttp.server")
    for installed in [f for f in logger.filters if isinstance(f, MalformedRequestFilter)]:
        logger.removeFilter(installed)


async def test_an_over_long_authorization_header_is_not_logged(
    aiohttp_server: ServerFactory, caplog: pytest.LogCaptureFixture, cli_logging: None
) -> None:
    caplog.set_level(logging.DEBUG)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    auth = BasicAuthGate((("prometheus", Secret(hashed)),))

    port = await serve_protected(aiohttp_server, auth)
    credentials = base64.b64encode(f"prometheus:{PASSWORD}{'x' * 9000}".encode()).decode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {credentials}\r\n\r\n".encode())
    await writer.drain()
    assert (await reader.readline()).startswith(b"HTTP/1.0 400")
    writer.close()
    await writer.wait_closed()
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert [r.getMessage() for r in records] == [
        "Error handling request from 127.0.0.1: malformed HTTP request refused with 400 "
        "(LineTooLong; its content is not logged)"
    ]
    assert records[0].exc_info is None
    assert credentials[:12] not in caplog.text and "cHJvbWV0aGV1" not in caplog.text


async def test_a_flood_of_malformed_requests_is_logged_once_per_minute_with_a_count(
    aiohttp_server: ServerFactory, caplog: pytest.LogCaptureFixture, cli_logging: None
) -> None:
    caplog.set_level(logging.DEBUG)
    logger = logging.getLogger("aiohttp.server")
    installed = next(f for f in logger.filters if isinstance(f, MalformedRequestFilter))
    now = [1000.0]
    installed.clock = lambda: now[0]
    auth = BasicAuthGate((("prometheus", Secret(bcrypt.hashpw(b"x", bcrypt.gensalt(rounds=4)).decode())),))
    port = await serve_protected(aiohttp_server, auth)

    async def malformed() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Long: " + b"y" * 9000 + b"\r\n\r\n")
        await writer.drain()
        assert (await reader.readline()).startswith(b"HTTP/1.0 400")
        writer.close()
        await writer.wait_closed()

    for _ in range(40):
        await malformed()
        now[0] += 1.0  # 40 requests in 40 s
    now[0] += 20.0  # a minute after the first line
    await malformed()
    messages = [r.getMessage() for r in caplog.records if r.name == "aiohttp.server"]
    assert messages == [
        "Error handling request from 127.0.0.1: malformed HTTP request refused with 400 "
        "(LineTooLong; its content is not logged)",
        "Error handling request from 127.0.0.1: malformed HTTP request refused with 400 "
        "(LineTooLong; its content is not logged); 39 more malformed requests in the 60 s since the last such "
        "line, not logged one by one",
    ]
