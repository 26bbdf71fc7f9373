"""What the simulator is asked, counted so that tests can prove how gently the exporter polls.

Mounted only with the fault routes (``simulate --faults``, and the tests): ``--demo`` runs the simulator in the
exporter's own process for months and keeps no per-connection bookkeeping.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Container
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler

from exporter.simulator.device import ENDPOINTS

# The name of the route whose requests are counted: GET /<name>/api/v1/<endpoint> (see exporter.simulator.api).
DEVICE_GET_ROUTE = "device-get"


@dataclass(slots=True)
class SimStats:
    requests: int = 0  # GET requests for a charger endpoint, answered or not
    hits: Counter[tuple[str, str]] = field(default_factory=Counter)  # (charger, endpoint) -> requests
    in_flight: Counter[tuple[str, str]] = field(default_factory=Counter)  # requests being answered now
    max_in_flight: Counter[tuple[str, str]] = field(default_factory=Counter)  # the most at once so far
    connections: dict[int, asyncio.BaseTransport] = field(default_factory=dict)  # id -> connection, closed pruned
    connections_total: int = 0  # client connections seen so far
    max_chargers_in_flight: int = 0  # the most chargers with a request being answered at the same time
    _charger_in_flight: Counter[str] = field(default_factory=Counter)
    _open_after_prune: int = 0
    _chargers_busy: int = 0

    def open_connections(self) -> int:
        """Client connections that asked for a charger endpoint and are still open."""
        return sum(1 for transport in self.connections.values() if not transport.is_closing())

    def connections_seen(self) -> int:
        return self.connections_total

    def saw_connection(self, transport: asyncio.BaseTransport) -> None:
        """Count a client connection once; forget closed ones now and then (a long test run opens thousands)."""
        if id(transport) in self.connections and self.connections[id(transport)] is transport:
            return
        self.connections_total += 1
        self.connections[id(transport)] = transport
        if len(self.connections) >= 2 * self._open_after_prune + 64:  # amortised: a sweep per doubling
            self.connections = {k: t for k, t in self.connections.items() if not t.is_closing()}
            self._open_after_prune = len(self.connections)

    def begin(self, charger: str, endpoint: str) -> None:
        key = (charger, endpoint)
        self.hits[key] += 1
        self.in_flight[key] += 1
        self.max_in_flight[key] = max(self.max_in_flight[key], self.in_flight[key])
        self._charger_in_flight[charger] += 1
        if self._charger_in_flight[charger] == 1:
            self._chargers_busy += 1
            self.max_chargers_in_flight = max(self.max_chargers_in_flight, self._chargers_busy)

    def end(self, charger: str, endpoint: str) -> None:
        self.in_flight[(charger, endpoint)] -= 1
        self._charger_in_flight[charger] -= 1
        if self._charger_in_flight[charger] == 0:
            self._chargers_busy -= 1


def mount_stats(app: web.Application, stats: SimStats, chargers: Container[str]) -> None:
    """Count in ``stats`` what ``app`` (a simulator app serving ``chargers``) is asked: the first middleware, outside
    the auth check, so that refused requests count too."""

    @web.middleware
    async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.match_info.route.name != DEVICE_GET_ROUTE:
            return await handler(request)
        stats.requests += 1
        name, endpoint = request.match_info["name"], request.match_info["endpoint"]
        if name not in chargers or endpoint not in ENDPOINTS:
            return await handler(request)  # which answers 404
        if request.transport is not None:
            stats.saw_connection(request.transport)
        stats.begin(name, endpoint)
        try:
            return await handler(request)
        finally:
            stats.end(name, endpoint)

    app.middlewares.insert(0, count_requests)
