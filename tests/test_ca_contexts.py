"""Chargers that name the same tls.ca_file share one TLS context instead of loading the bundle once each.

A CA bundle (the system one is ~220 KB, ~140 certificates) takes ~20 ms to load, on the event loop, and ~0.8 MiB
per context: 200 chargers naming it cost 4 s of stalled scrapes and ~160 MiB at start and at every reload that
replaces the connection pool.
"""

from __future__ import annotations

import os
from pathlib import Path

from exporter.config import ChargerConfig, Config, TLSConfig
from exporter.scrape.fetch import ChargerClient
from exporter.serve.app import EXPORTER
from tests.support.fleet import MakeClient, ServerFactory
from tests.support.samples import get, scrape
from tests.support.tls import serve_https_charger


async def test_chargers_naming_one_ca_file_share_one_context(
    pki: Path, aiohttp_server: ServerFactory, exporter_client: MakeClient
) -> None:
    port = await serve_https_charger(pki, aiohttp_server, route="/{name}/api/v1/{ep}")
    tls = TLSConfig(ca_file=str(pki / "ca.pem"))
    names = ["bay-1", "bay-2", "bay-3"]
    chargers = tuple(ChargerConfig(n, f"https://127.0.0.1:{port}/{n}", tls=tls) for n in names)
    client = await exporter_client(Config(chargers=chargers))
    samples = await scrape(client)
    assert [get(samples, "pulsatrix_up", charger=n) for n in names] == [1.0, 1.0, 1.0]
    contexts = {id(client.app[EXPORTER].fleet.pollers[n].client._ssl) for n in names}
    assert len(contexts) == 1, "one context for the one CA file"


async def test_a_rewritten_ca_file_is_loaded_again(pki: Path, exporter_client: MakeClient, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes((pki / "ca.pem").read_bytes())
    charger = ChargerConfig("bay", "https://127.0.0.1:1", tls=TLSConfig(ca_file=str(ca)))
    client = await exporter_client(Config(chargers=(charger,)))
    session = client.app[EXPORTER].fleet.session
    assert session is not None
    before = ChargerClient(charger, session)._ssl
    assert ChargerClient(charger, session)._ssl is before
    stat = ca.stat()
    os.utime(ca, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # the CA file was renewed
    assert ChargerClient(charger, session)._ssl is not before
