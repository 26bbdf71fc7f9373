"""A minimal app behind the exporter's basic-auth middleware, for tests of the middleware itself."""

from __future__ import annotations

from aiohttp import web

from exporter.serve.auth import BasicAuthGate
from tests.support.fleet import ServerFactory


async def serve_protected(aiohttp_server: ServerFactory, auth: BasicAuthGate) -> int:
    """Serve ``GET /metrics`` ("hello") behind ``auth``; return the port."""

    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hello\n")

    app = web.Application(middlewares=[auth.middleware])
    app.router.add_get("/metrics", hello)
    app.on_cleanup.append(auth.close)
    server = await aiohttp_server(app)
    assert server.port is not None
    return server.port
