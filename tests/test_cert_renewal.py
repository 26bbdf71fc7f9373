"""The web config is live: a renewed certificate and key are served without a restart or a dropped connection,
and basic_auth_users (and the rest) are re-read on reload. Certificates are made at test time (make_pki)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import shutil
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import bcrypt
import pytest
from aiohttp import web

from exporter.config import load_config
from exporter.config.web import load_web_config
from exporter.serve import webconfig
from exporter.serve.app import create_app
from exporter.serve.webconfig import LiveWebConfig
from tests.support.fleet import SimulatedFleet, write_config
from tests.support.tls import make_pki

PASSWORD = "correct horse battery staple"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$", 1)


@pytest.fixture(scope="module")
def two_pkis(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_pki(tmp_path_factory.mktemp("old")), make_pki(tmp_path_factory.mktemp("new"))


def install(src: Path, cert: Path, key: Path, into: Path) -> None:
    """Replace the served files the way cert-manager and certbot do: a complete file renamed into place."""
    for source, name in ((cert, "server.pem"), (key, "server.key")):
        shutil.copyfile(source, into / f"{name}.tmp")
        os.replace(into / f"{name}.tmp", into / name)


def der(pki: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert((pki / "server.pem").read_text())


async def serve(live: LiveWebConfig, app: web.Application) -> AsyncIterator[int]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=live.ssl_context)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


def client_context(*pkis: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pkis[0] / "ca.pem"))
    for pki in pkis[1:]:
        context.load_verify_locations(cafile=str(pki / "ca.pem"))
    return context


class Connection:
    """One keep-alive HTTPS connection, requests sent on it one after the other."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, *pkis: Path) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context(*pkis))
        return cls(reader, writer)

    @property
    def cert(self) -> bytes:
        ssl_object: ssl.SSLObject = self.writer.get_extra_info("ssl_object")
        cert = ssl_object.getpeercert(binary_form=True)
        assert cert is not None
        return cert

    async def request(self, method: str, path: str, auth: str | None = None) -> tuple[int, str]:
        headers = f"Authorization: Basic {auth}\r\n" if auth else ""
        self.writer.write(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n{headers}\r\n".encode())
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        body = await self.reader.readexactly(length)
        return int(status_line.split()[1]), body.decode(errors="replace")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self.writer.wait_closed()


@pytest.fixture
def served(
    tmp_path: Path, two_pkis: tuple[Path, Path], fleet: SimulatedFleet
) -> tuple[Path, LiveWebConfig, web.Application]:
    old, _ = two_pkis
    install(old, old / "server.pem", old / "server.key", tmp_path)
    web_yml = tmp_path / "web.yml"
    web_yml.write_text("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n")
    live = LiveWebConfig(web_yml, load_web_config(web_yml))
    config = write_config(tmp_path / "pulsatrix.yml", fleet, ["garage"])
    app = create_app(load_config(config), enable_lifecycle=True, web_config=live)
    return web_yml, live, app


async def test_a_renewed_certificate_is_served_to_new_connections_and_open_ones_keep_working(
    served: tuple[Path, LiveWebConfig, web.Application],
    two_pkis: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(webconfig, "CERT_CHECK_INTERVAL", 0.0)  # look at the files on every handshake
    _, live, app = served
    old, new = two_pkis
    async for port in serve(live, app):
        kept = await Connection.open(port, old, new)
        assert (await kept.request("GET", "/-/healthy"), kept.cert) == ((200, "Healthy.\n"), der(old))
        install(new, new / "server.pem", new / "server.key", tmp_path)  # renewed: another key and CA even
        fresh = await Connection.open(port, old, new)
        assert (await fresh.request("GET", "/-/healthy"), fresh.cert) == ((200, "Healthy.\n"), der(new))
        # The connection open since before the renewal goes on, with the certificate it started with.
        assert (await kept.request("GET", "/-/healthy"), kept.cert) == ((200, "Healthy.\n"), der(old))
        await kept.close()
        await fresh.close()


async def test_a_broken_new_pair_keeps_the_old_one_and_is_logged_once(
    served: tuple[Path, LiveWebConfig, web.Application],
    two_pkis: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(webconfig, "CERT_CHECK_INTERVAL", 0.0)
    _, live, app = served
    old, new = two_pkis
    async for port in serve(live, app):
        install(new, new / "server.pem", old / "server.key", tmp_path)  # the new certificate with the old key
        for _ in range(3):  # three new connections, three handshakes
            connection = await Connection.open(port, old, new)
            assert (await connection.request("GET", "/-/healthy"))[0] == 200
            assert connection.cert == der(old)
            await connection.close()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert errors[0].startswith(
        f"TLS: the changed certificate and key ({tmp_path / 'server.pem'}, {tmp_path / 'server.key'}) do not load, "
        "the running ones stay: "
    ), errors[0]


async def test_basic_auth_users_are_read_again_on_reload_and_a_broken_web_config_keeps_them(
    served: tuple[Path, LiveWebConfig, web.Application], two_pkis: tuple[Path, Path]
) -> None:
    web_yml, live, app = served
    old, new = two_pkis
    auth = base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()
    async for port in serve(live, app):
        c = await Connection.open(port, old, new)
        assert (await c.request("GET", "/-/metrics"))[0] == 200  # no users yet: open
        web_yml.write_text(web_yml.read_text() + f"basic_auth_users:\n  prometheus: '{HASH}'\n")
        status, body = await c.request("POST", "/-/reload")
        assert status == 200
        assert body.endswith(f"\nweb config {web_yml}: OK, TLS (min TLS12), basic auth for 1 user\n"), body
        assert (await c.request("GET", "/-/metrics"))[0] == 401
        assert (await c.request("GET", "/-/metrics", auth))[0] == 200
        web_yml.write_text("basic_auth_users: [nonsense]\n")
        status, body = await c.request("POST", "/-/reload", auth)
        assert f"\nweb config rejected, the running one stays: {web_yml}: " in body, body
        assert HASH not in body
        assert (await c.request("GET", "/-/metrics"))[0] == 401  # the users stay
        assert (await c.request("GET", "/-/metrics", auth))[0] == 200
        await c.close()
