"""HTTPS chargers: a private CA via `tls.ca_file`, an unverifiable certificate, and `insecure_skip_verify`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from exporter.config import ChargerConfig, Config, TLSConfig, parse_config
from tests.support.fleet import ExporterClient, ServerFactory, SimulatedFleet
from tests.support.samples import get, scrape
from tests.support.tls import serve_https_charger

OPENAPI = Path(__file__).parent / "fixtures" / "payloads" / "openapi"


@pytest.fixture
async def https_charger(pki: Path, aiohttp_server: ServerFactory) -> str:
    return f"https://127.0.0.1:{await serve_https_charger(pki, aiohttp_server)}"


@pytest.mark.parametrize(
    ("tls", "up", "reason"),
    [
        ("ca", 1.0, None),
        (None, 0.0, "connect"),  # not signed by a CA the system trusts
        ("insecure", 1.0, None),
    ],
)
async def test_https_chargers(
    pki: Path,
    https_charger: str,
    exporter_client: Callable[[Config], Awaitable[ExporterClient]],
    tls: str | None,
    up: float,
    reason: str | None,
) -> None:
    tls_config = {
        "ca": TLSConfig(ca_file=str(pki / "ca.pem")),
        "insecure": TLSConfig(insecure_skip_verify=True),
        None: None,
    }[tls]
    client = await exporter_client(Config(chargers=(ChargerConfig("secure", https_charger, tls=tls_config),)))
    samples = await scrape(client)
    assert get(samples, "pulsatrix_up", charger="secure") == up
    if reason is not None:
        assert get(samples, "pulsatrix_scrape_errors_total", charger="secure", endpoint="charging", reason=reason) == 1
        page = await (await client.get("/")).text()
        assert "TLS error" in page or "certificate" in page.lower()
    else:
        assert get(samples, "pulsatrix_voltage_volts", charger="secure", phase="L1") == 234.1605072


def test_ca_file_from_config_is_resolved_relative_to_the_config(pki: Path) -> None:
    text = "chargers:\n  - name: s\n    url: https://127.0.0.1\n    tls: {ca_file: ca.pem}\n"
    charger = parse_config(text, base_dir=pki).chargers[0]
    assert charger.tls == TLSConfig(ca_file=str(pki / "ca.pem"), insecure_skip_verify=False)


async def test_a_ca_file_that_vanished_after_the_check_fails_only_that_charger(
    pki: Path, https_charger: str, fleet: SimulatedFleet, exporter_client: Callable[[Config], Awaitable[ExporterClient]]
) -> None:
    gone = ChargerConfig("secure", https_charger, tls=TLSConfig(ca_file=str(pki / "removed.pem")))
    client = await exporter_client(Config(chargers=(gone, *fleet.config().chargers)))
    samples = await scrape(client)
    assert get(samples, "pulsatrix_up", charger="secure") == 0.0
    assert get(samples, "pulsatrix_scrape_errors_total", charger="secure", endpoint="charging", reason="connect") == 1
    assert get(samples, "pulsatrix_up", charger="garage") == 1.0
    assert "cannot load tls.ca_file" in await (await client.get("/")).text()
