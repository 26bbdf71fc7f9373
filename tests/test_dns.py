"""Hanging or failing DNS costs only the chargers whose names do not resolve (exporter/scrape/dns.py, PoolResolver)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from exporter.config import ChargerConfig, Config
from exporter.scrape.dns import FAILED_TTL, PoolResolver
from exporter.serve.app import EXPORTER
from tests.support.fleet import MakeClient, MakeFleet
from tests.support.samples import get, scrape


class FakeDns:
    """``socket.getaddrinfo`` as a DNS server that never answers for ``*.hang.test``, knows no ``*.gone.test``
    and gives 127.0.0.1 for ``*.ok.test``; every other name (and address) is looked up for real."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.asked: list[str] = []
        self.hanging = 0
        self._real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name.endswith(".test"):
            self.asked.append(name)
        if name.endswith(".hang.test"):
            self.hanging += 1
            self.release.wait(timeout=60)  # until the test ends: "never"
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        if name.endswith(".gone.test"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if name.endswith(".ok.test"):
            return self._real("127.0.0.1", port, *args, **kwargs)
        return self._real(host, port, *args, **kwargs)


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDns]:
    fake = FakeDns()
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    yield fake
    fake.release.set()


async def test_names_that_never_resolve_never_starve_healthy_host_name_chargers(
    make_fleet: MakeFleet, exporter_client: MakeClient, dns: FakeDns
) -> None:
    """12 chargers whose DNS never answers (twice the default thread pool here), 3 healthy chargers by host name:
    the healthy ones are up on every scrape; the hanging ones time out at their own deadline."""
    fleet = await make_fleet(15)
    base = fleet.config().chargers
    hanging = [
        ChargerConfig(f"h{i}", c.url.replace("127.0.0.1", f"h{i}.hang.test"), timeout=1.0)
        for i, c in enumerate(base[:12])
    ]
    healthy = [
        ChargerConfig(f"ok{i}", c.url.replace("127.0.0.1", f"ok{i}.ok.test"), timeout=1.0)
        for i, c in enumerate(base[12:])
    ]
    client = await exporter_client(Config(chargers=(*hanging, *healthy)))
    for polled in (1.0, 2.0, 3.0):
        samples = await scrape(client)
        assert [get(samples, "pulsatrix_up", charger=c.name) for c in healthy] == [1.0] * 3
        assert (
            get(samples, "pulsatrix_scrape_errors_total", charger="h0", endpoint="limits", reason="timeout") == polled
        )
    assert dns.hanging == 12, "one lookup per hanging name, never a new one per scrape"


async def test_a_failed_lookup_is_remembered_for_30_seconds(
    make_fleet: MakeFleet, exporter_client: MakeClient, dns: FakeDns
) -> None:
    fleet = await make_fleet(2)
    gone, ok = fleet.config().chargers
    chargers = (
        ChargerConfig("gone", gone.url.replace("127.0.0.1", "charger.gone.test"), timeout=1.0),
        ChargerConfig("ok", ok.url.replace("127.0.0.1", "charger.ok.test"), timeout=1.0),
    )
    now = [100.0]
    client = await exporter_client(Config(chargers=chargers))
    resolver = client.app[EXPORTER].fleet.resolver
    assert isinstance(resolver, PoolResolver)
    resolver.clock = lambda: now[0]
    for polled in (1.0, 2.0, 3.0):
        samples = await scrape(client)
        assert (
            get(samples, "pulsatrix_scrape_errors_total", charger="gone", endpoint="limits", reason="connect") == polled
        )
        assert get(samples, "pulsatrix_up", charger="ok") == 1.0
    assert dns.asked.count("charger.gone.test") == 1
    now[0] += FAILED_TTL
    await scrape(client)
    assert dns.asked.count("charger.gone.test") == 2
