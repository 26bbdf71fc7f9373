"""A throw-away PKI made with openssl, and an HTTPS fake charger using it. The ``pki`` fixture is in conftest."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from aiohttp import web

from tests.support.fleet import ServerFactory

OPENAPI = Path(__file__).resolve().parents[1] / "fixtures" / "payloads" / "openapi"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(d: Path) -> Path:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl in ``d``."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is needed to make test certificates")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=test CA", cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, cn in (("server", "127.0.0.1"), ("client", "prometheus")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={cn}", cwd=d)  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", "-extfile", "san.ext", cwd=d)  # fmt: skip
    return d


async def serve_https_charger(pki: Path, aiohttp_server: ServerFactory, route: str = "/api/v1/{ep}") -> int:
    """An HTTPS server with the test PKI's server certificate answering the vendor's sample for every endpoint
    (``route`` must capture the endpoint as ``{ep}``); returns its port."""

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=(OPENAPI / f"{request.match_info['ep']}.json").read_bytes())

    app = web.Application()
    app.router.add_get(route, serve)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki / "server.pem", pki / "server.key")
    server = await aiohttp_server(app, ssl=context)
    assert server.port is not None
    return server.port
