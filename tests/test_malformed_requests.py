"""A request aiohttp cannot parse is logged in one line, never with its bytes (they may hold a password)."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Iterator

import bcrypt
import pytest

from exporter.cli import _MalformedRequestFilter, setup_logging
from exporter.config import Secret
from exporter.webauth import BasicAuthGate
from tests.support.auth import serve_protected
from tests.support.fleet import ServerFactory

PASSWORD = "Sup3rSecretPassw0rd"


@pytest.fixture
def cli_logging() -> Iterator[None]:
    setup_logging("debug")  # as the command does (basicConfig itself is a no-op under pytest)
    yield
    logger = logging.getLogger("aiohttp.server")
    for installed in [f for f in logger.filters if isinstance(f, _MalformedRequestFilter)]:
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
