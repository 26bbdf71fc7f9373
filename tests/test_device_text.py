"""What a charger sends is data, not log text: its bytes reach a log line, an error detail or the landing page only
cleaned (control characters escaped) and cut to 200 characters (exporter/scrape/devicetext.py)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from exporter.config import ChargerConfig, Config
from exporter.scrape.devicetext import MAX_DEVICE_TEXT, device_text
from exporter.serve.app import EXPORTER
from tests.support.fleet import MakeClient, SimulatedFleet
from tests.support.samples import get, scrape

JUNK = b"\x1b[2J\x1b]0;owned\x07" + b"J" * 128_000  # 128 kB after the body, an escape code first


def test_device_text_escapes_control_characters_and_cuts_at_200() -> None:
    assert device_text("Service Unavailable") == "Service Unavailable"
    assert device_text("\x1b[2Jgone\r\nX-Fake: 1\u2028") == "\\x1b[2Jgone\\r\\nX-Fake: 1\\u2028"
    cut = device_text("x" * 128_000)
    assert cut == "x" * (MAX_DEVICE_TEXT - 1) + "…"
    assert len(device_text("\x1b" * 1000)) <= MAX_DEVICE_TEXT
    assert device_text(ValueError("bad\tvalue"), 6) == "bad\\t…"


RawCharger = Callable[[bytes], Awaitable[str]]


@pytest.fixture
async def raw_charger() -> AsyncIterator[RawCharger]:
    """A charger that answers every request with the given bytes (a raw server: aiohttp would refuse to send them);
    returns its base URL."""
    servers: list[asyncio.Server] = []

    async def handle(reply: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def serve(reply: bytes) -> str:
        server = await asyncio.start_server(functools.partial(handle, reply), "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/odd"

    yield serve
    for server in servers:
        server.close()
        await server.wait_closed()


def assert_clean(text: str) -> None:
    assert "\x1b" not in text and "\x07" not in text, "no raw control character"
    assert "JJJJ" * 60 not in text, "never the whole junk"


async def test_junk_after_a_body_becomes_a_short_clean_detail(
    fleet: SimulatedFleet, raw_charger: RawCharger, exporter_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    reply = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}" + JUNK
    odd = ChargerConfig("odd", await raw_charger(reply), timeout=2.0)
    client = await exporter_client(Config(chargers=(*fleet.config().chargers, odd)))
    samples = await scrape(client)
    assert get(samples, "pulsatrix_up", charger="odd") == 0.0
    assert get(samples, "pulsatrix_up", charger="garage") == 1.0
    error = client.app[EXPORTER].health.status["odd"].last_error
    assert error is not None
    detail = error.split(": invalid_payload: ", 1)[1]
    assert detail.startswith("bad HTTP response: Bad status line:\\n  Expected HTTP/")
    assert len(detail) <= len("bad HTTP response: ") + MAX_DEVICE_TEXT and detail.endswith("…")
    assert_clean(error)
    page = await (await client.get("/")).text()
    assert_clean(page)
    assert len(page) < 10_000  # 129 kB before
    assert_clean(caplog.text)
    assert max(len(r.getMessage()) for r in caplog.records) < 2_000  # 127,967 characters before


async def test_escape_codes_in_a_reason_phrase_are_escaped(
    raw_charger: RawCharger, exporter_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    reply = b"HTTP/1.1 503 \x1b[2J\x1b[31mgo away" + b"R" * 5000 + b"\r\nContent-Length: 0\r\n\r\n"
    odd = ChargerConfig("odd", await raw_charger(reply), timeout=2.0)
    client = await exporter_client(Config(chargers=(odd,)))
    await scrape(client)
    error = client.app[EXPORTER].health.status["odd"].last_error
    phrase = "\\x1b[2J\\x1b[31mgo away" + "R" * (MAX_DEVICE_TEXT - 1 - 22) + "…"
    assert error == f"limits: http_status: HTTP 503 {phrase}"
    assert_clean(caplog.text + await (await client.get("/")).text())
    assert f"http_status on configuration, transaction, charging, limits (HTTP 503 {phrase})" in caplog.text
