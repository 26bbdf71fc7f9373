"""The chargers are protected: coalesced polls, min_interval, max_concurrency, kept-alive and bounded connections.

Every claim is counted at the simulated chargers (``Simulator.hits``, ``max_in_flight``, ``connections``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import cast

import aiohttp
import pytest

from exporter.config import DEFAULT_KEEPALIVE, DEFAULT_MAX_CONCURRENCY, ChargerConfig, Config, ConfigError, parse_config
from exporter.scrape import fetch
from exporter.scrape.health import ExporterHealth
from exporter.scrape.poll import Poller
from exporter.scrape.results import ENDPOINTS, EndpointFetch, Reason
from exporter.serve.app import EXPORTER
from exporter.simulator import set_fault
from tests.support.fleet import MakeClient, MakeFleet, SimulatedFleet
from tests.support.samples import get, parse, scrape


def configured(
    fleet: SimulatedFleet,
    *,
    min_interval: float = 0.0,
    max_concurrency: int | None = None,
    keepalive_timeout: float = DEFAULT_KEEPALIVE,
) -> Config:
    """The fleet's config with serving options; ``min_interval`` goes onto every charger, as the loader does."""
    chargers = tuple(replace(c, min_interval=min_interval) for c in fleet.config().chargers)
    return Config(chargers=chargers, max_concurrency=max_concurrency, keepalive_timeout=keepalive_timeout)


async def test_concurrent_scrapes_share_one_request_per_charger_endpoint(
    fleet: SimulatedFleet, exporter_client: MakeClient
) -> None:
    """3 x /metrics and 2 x /probe of the same charger at once (an HA pair plus Grafana): one poll per endpoint."""
    for name in fleet.names:
        set_fault(fleet.sim.chargers[name], "latency", seconds=0.4)  # all five scrapes arrive during the poll
    client = await exporter_client(fleet.config())
    responses = await asyncio.gather(
        *(client.get("/metrics") for _ in range(3)), *(client.get("/probe?target=garage") for _ in range(2))
    )
    for response in responses:
        assert response.status == 200
        assert get(parse(await response.text()), "pulsatrix_up", charger="garage") == 1.0
    for name in fleet.names:
        for endpoint in ENDPOINTS:
            assert fleet.stats.hits[(name, endpoint)] == 1, (name, endpoint)
            assert fleet.stats.max_in_flight[(name, endpoint)] == 1
    assert fleet.stats.connections_seen() == 4 * len(fleet.names)  # sockets: one per endpoint of each charger
    # Once the poll is over, the next scrape polls again (no min_interval).
    await scrape(client, "/probe?target=garage")
    assert fleet.stats.hits[("garage", "charging")] == 2


async def test_a_shared_failing_poll_is_counted_and_logged_once(
    fleet: SimulatedFleet, exporter_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="exporter")
    set_fault(fleet.sim.chargers["garage"], "latency", seconds=0.3)
    set_fault(fleet.sim.chargers["carport"], "http_500")
    client = await exporter_client(fleet.config())
    texts = [await r.text() for r in await asyncio.gather(*(client.get("/metrics") for _ in range(3)))]
    assert fleet.stats.hits[("carport", "charging")] <= 3  # the fast one may finish before the next scrape starts
    final = parse(texts[-1])
    count = get(final, "pulsatrix_scrape_errors_total", charger="carport", endpoint="charging", reason="http_status")
    assert count == fleet.stats.hits[("carport", "charging")]  # one count per request actually sent, not per scrape
    failing = [r for r in caplog.records if r.getMessage().startswith("charger carport failing")]
    assert len(failing) == 1


async def test_min_interval_serves_a_fresh_enough_reading_with_its_age(
    fleet: SimulatedFleet, exporter_client: MakeClient
) -> None:
    config = fleet.config()
    garage, carport, bay = config.chargers
    client = await exporter_client(Config(chargers=(replace(garage, min_interval=60.0), carport, bay)))
    first = await scrape(client)
    assert get(first, "pulsatrix_reading_age_seconds", charger="garage") == 0.0
    await asyncio.sleep(0.2)
    second = await scrape(client)
    for endpoint in ENDPOINTS:
        assert fleet.stats.hits[("garage", endpoint)] == 1  # served again, not polled
        assert fleet.stats.hits[("carport", endpoint)] == 2
    age = get(second, "pulsatrix_reading_age_seconds", charger="garage")
    assert age is not None and 0.2 <= age < 5
    assert get(second, "pulsatrix_reading_age_seconds", charger="carport") == 0.0
    assert get(second, "pulsatrix_up", charger="garage") == 1.0
    assert get(second, "pulsatrix_voltage_volts", charger="garage", phase="L1") == get(
        first, "pulsatrix_voltage_volts", charger="garage", phase="L1"
    )


async def test_a_cached_failure_is_not_counted_or_logged_again(
    fleet: SimulatedFleet, exporter_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="exporter")
    set_fault(fleet.sim.chargers["garage"], "http_500")
    client = await exporter_client(configured(fleet, min_interval=60.0))
    for _ in range(3):
        samples = await scrape(client)
        await scrape(client, "/probe?target=garage")
    assert fleet.stats.hits[("garage", "charging")] == 1
    assert get(samples, "pulsatrix_up", charger="garage") == 0.0
    assert (
        get(samples, "pulsatrix_scrape_errors_total", charger="garage", endpoint="charging", reason="http_status")
        == 1.0
    )
    assert len([r for r in caplog.records if r.getMessage().startswith("charger garage failing")]) == 1


async def test_max_concurrency_bounds_the_chargers_polled_at_once(
    make_fleet: MakeFleet, exporter_client: MakeClient
) -> None:
    fleet = await make_fleet(6)
    for charger in fleet.sim.chargers.values():
        set_fault(charger, "latency", seconds=0.2)
    client = await exporter_client(configured(fleet, max_concurrency=2))
    samples = await scrape(client)
    assert all(get(samples, "pulsatrix_up", charger=name) == 1.0 for name in fleet.names)  # 3 rounds < timeout
    assert fleet.stats.max_chargers_in_flight == 2
    assert fleet.stats.connections_seen() <= 4 * 2


async def test_by_default_hanging_chargers_never_queue_the_healthy_ones(
    make_fleet: MakeFleet, exporter_client: MakeClient
) -> None:
    """A config without max_concurrency (a site's network down: 260 chargers hanging until their timeout, more than
    any fixed bound would hold): the three healthy ones are polled at once and up, none of them throttled."""
    fleet = await make_fleet(263)
    healthy = fleet.names[:3]
    for name in fleet.names[3:]:
        set_fault(fleet.sim.chargers[name], "latency", seconds=3.0)
    chargers = tuple(replace(c, timeout=1.0) for c in fleet.config().chargers)
    client = await exporter_client(Config(chargers=chargers))  # no max_concurrency given
    assert client.app[EXPORTER].fleet.config.max_concurrency is DEFAULT_MAX_CONCURRENCY is None
    samples = await scrape(client)
    assert all(get(samples, "pulsatrix_up", charger=name) == 1.0 for name in healthy)
    throttled = [key for key, value in samples.items() if ("reason", "throttled") in key[1] and value > 0]
    assert throttled == []


async def test_waiting_for_a_polling_slot_counts_against_the_deadline(
    make_fleet: MakeFleet, exporter_client: MakeClient
) -> None:
    fleet = await make_fleet(3)
    for charger in fleet.sim.chargers.values():
        set_fault(charger, "latency", seconds=0.6)
    chargers = tuple(replace(c, timeout=1.0) for c in fleet.config().chargers)
    client = await exporter_client(Config(chargers=chargers, max_concurrency=1))
    samples = await scrape(client)
    up = [name for name in fleet.names if get(samples, "pulsatrix_up", charger=name) == 1.0]
    assert len(up) == 1  # the first gets the slot; the second has 0.4 s left, the third never gets one
    for name in fleet.names:
        duration = get(samples, "pulsatrix_scrape_duration_seconds", charger=name)
        assert duration is not None and duration < 1.5
    errors = [client.app[EXPORTER].health.status[name].last_error or "" for name in fleet.names if name not in up]
    assert any("no free polling slot before the deadline (max_concurrency)" in e for e in errors), errors
    assert sum(fleet.stats.hits[(name, "charging")] for name in fleet.names) == 2  # the third never asked


async def test_a_charger_starved_of_a_polling_slot_is_throttled_not_timed_out(
    make_fleet: MakeFleet, exporter_client: MakeClient
) -> None:
    """max_concurrency=1, three chargers answering in 0.6 s, timeout 1 s: the first answers, the second gets the
    slot with 0.4 s left and times out at the charger, the third never gets one: the exporter's limit, not the
    device, so `throttled`; and it is not served again for min_interval (the charger was never asked)."""
    fleet = await make_fleet(3)
    for charger in fleet.sim.chargers.values():
        set_fault(charger, "latency", seconds=0.6)
    chargers = tuple(replace(c, timeout=1.0, min_interval=60.0) for c in fleet.config().chargers)
    client = await exporter_client(Config(chargers=chargers, max_concurrency=1))
    samples = await scrape(client)
    reasons = {}
    for name in fleet.names:
        failed = {
            reason
            for reason in ("timeout", "throttled")
            if get(samples, "pulsatrix_scrape_errors_total", charger=name, endpoint="charging", reason=reason)
        }
        reasons[name] = failed
    assert sorted(map(sorted, reasons.values())) == [[], ["throttled"], ["timeout"]], reasons
    (starved,) = [name for name, failed in reasons.items() if failed == {"throttled"}]
    assert fleet.stats.hits[(starved, "charging")] == 0
    status = client.app[EXPORTER].health.status[starved].last_error or ""
    assert status.startswith("limits: throttled: no free polling slot before the deadline (max_concurrency)"), status
    for charger in fleet.sim.chargers.values():
        set_fault(charger, "latency", seconds=0.0)
    again = await scrape(client, f"/probe?target={starved}")  # within min_interval, yet polled: it was not cached
    assert get(again, "pulsatrix_up", charger=starved) == 1.0
    assert fleet.stats.hits[(starved, "charging")] == 1


async def test_a_scrape_that_joins_a_poll_still_waiting_for_a_slot_is_told_throttled(
    make_fleet: MakeFleet, exporter_client: MakeClient
) -> None:
    """A scrape with a 0.3 s budget joins a poll of the second charger, queued behind the first (0.8 s), and gives
    up first: what it gets says throttled, as the poll it joined will."""
    fleet = await make_fleet(2)
    first, second = fleet.names
    set_fault(fleet.sim.chargers[first], "latency", seconds=0.8)
    chargers = tuple(replace(c, timeout=5.0) for c in fleet.config().chargers)
    client = await exporter_client(Config(chargers=chargers, max_concurrency=1))
    metrics = asyncio.ensure_future(client.get("/metrics"))
    await asyncio.sleep(0.1)  # the /metrics scrape holds the slot for the first; the second waits for it
    (reading,) = await client.app[EXPORTER].fleet.read([client.app[EXPORTER].fleet.pollers[second]], 0.3)
    assert {e.reason for e in reading.result.endpoints.values()} == {Reason.THROTTLED}
    assert (await metrics).status == 200
    assert fleet.stats.hits[(second, "charging")] == 1  # the poll it joined got its slot in the end


async def test_connections_are_kept_alive_across_scrapes(fleet: SimulatedFleet, exporter_client: MakeClient) -> None:
    client = await exporter_client(fleet.config())
    for _ in range(3):
        await scrape(client)
        await asyncio.sleep(0.3)
    assert fleet.stats.connections_seen() == 4 * len(fleet.names)  # every scrape reused the first scrape's sockets
    assert fleet.stats.open_connections() == 4 * len(fleet.names)


async def test_keepalive_timeout_is_configurable(fleet: SimulatedFleet, exporter_client: MakeClient) -> None:
    client = await exporter_client(configured(fleet, keepalive_timeout=0.1))
    for _ in range(2):
        await scrape(client)
        await asyncio.sleep(0.5)  # longer than the keep-alive: the idle sockets are closed
    assert fleet.stats.connections_seen() == 2 * 4 * len(fleet.names)
    assert fleet.stats.open_connections() == 0


def test_serving_keys_and_their_defaults() -> None:
    text = """
min_interval: 20
max_concurrency: 50
chargers:
  - {name: a, url: "http://127.0.0.1:1"}
  - {name: b, url: "http://127.0.0.1:2", min_interval: 0}
"""
    config = parse_config(text)
    assert [c.min_interval for c in config.chargers] == [20.0, 0.0]
    assert config.max_concurrency == 50
    assert config.keepalive_timeout == DEFAULT_KEEPALIVE == 300.0  # longer than any usual scrape interval
    plain = parse_config('chargers: [{name: a, url: "http://127.0.0.1:1"}]')
    assert (plain.chargers[0].min_interval, plain.max_concurrency) == (0.0, DEFAULT_MAX_CONCURRENCY) == (0.0, None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("min_interval: -1", "min_interval: must be greater than 0 and at most 3600, got -1"),
        ("max_concurrency: 0", "max_concurrency: must be a whole number from 1 to 100000, got int (0)"),
        ("max_concurrency: 2.5", "max_concurrency: must be a whole number from 1 to 100000, got float (2.5)"),
        ("keepalive_timeout: 0", "keepalive_timeout: must be greater than 0 and at most 3600, got 0"),
    ],
)
def test_serving_keys_are_checked(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text + '\nchargers: [{name: a, url: "http://127.0.0.1:1"}]', source="x.yml")
    assert caught.value.problems == [message]


async def test_an_exporter_bug_is_reported_as_exporter_error(
    fleet: SimulatedFleet, exporter_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_: object) -> object:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("exporter.scrape.poll.parse_charger", broken)
    client = await exporter_client(fleet.config())
    samples = await scrape(client)
    assert get(samples, "pulsatrix_up", charger="garage") == 0.0
    assert (
        get(samples, "pulsatrix_scrape_errors_total", charger="garage", endpoint="charging", reason="exporter_error")
        == 1.0
    )
    blamed = get(
        samples, "pulsatrix_scrape_errors_total", charger="garage", endpoint="charging", reason="invalid_payload"
    )
    assert blamed is None  # the charger is not blamed for the exporter's bug
    assert client.app[EXPORTER].fleet.session is not None


async def test_a_bug_building_metrics_is_counted_as_exporter_error_and_logged_once(
    fleet: SimulatedFleet,
    exporter_client: MakeClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*_: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr("exporter.scrape.families.add_direct", broken)
    client = await exporter_client(fleet.config())
    for _ in range(2):
        samples = await scrape(client, "/probe?target=garage")
    for endpoint in ENDPOINTS:
        assert (
            get(samples, "pulsatrix_scrape_errors_total", charger="garage", endpoint=endpoint, reason="exporter_error")
            == 2.0
        )
    assert get(samples, "pulsatrix_voltage_volts", charger="garage") is None
    logged = [r for r in caplog.records if "cannot build metrics" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("exporter.scrape.poll.parse_charger", "charger garage: unexpected error while polling"),
        ("exporter.scrape.fetch.ChargerClient._get", "charger garage: configuration: unexpected error"),
    ],
)
async def test_a_bug_while_polling_or_fetching_is_logged_once_per_kind(
    fleet: SimulatedFleet,
    exporter_client: MakeClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    target: str,
    message: str,
) -> None:
    def broken(*_: object) -> object:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(target, broken)
    client = await exporter_client(fleet.config())
    for _ in range(3):
        samples = await scrape(client, "/probe?target=garage")
    errors = get(samples, "pulsatrix_scrape_errors_total", charger="garage", endpoint="limits", reason="exporter_error")
    assert errors == 3.0  # counted every time ...
    logged = [r for r in caplog.records if "unexpected error" in r.getMessage()]
    assert [r.getMessage() for r in logged] == [message]  # ... but one traceback, for the first endpoint
    assert logged[0].exc_info is not None and logged[0].exc_info[0] is ZeroDivisionError


async def test_a_bug_while_handling_one_endpoints_error_leaves_the_other_endpoints_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The guard around an endpoint's fetch covers its own error handling too: one endpoint's bug is that endpoint's
    ``exporter_error``, never the charger's other three answers."""

    class Client(fetch.ChargerClient):
        async def _get(self, endpoint: str) -> bytes | EndpointFetch:
            if endpoint == "charging":
                raise aiohttp.ClientPayloadError("broken body")
            return b"{}"

    def broken(exc: BaseException | None) -> str:
        raise ValueError("a bug in the exporter's error text")

    monkeypatch.setattr(fetch, "_short", broken)
    charger = ChargerConfig("garage", "http://127.0.0.1:9", timeout=5.0)
    poller = Poller(Client(charger, cast(aiohttp.ClientSession, None)), ExporterHealth([charger]), None)
    now = asyncio.get_running_loop().time()
    reading = poller.reading(now + 5.0, now + 5.0)
    assert isinstance(reading, asyncio.Future)
    reasons = {endpoint: result.reason for endpoint, result in (await reading).result.endpoints.items()}
    assert reasons == {"configuration": None, "transaction": None, "charging": Reason.EXPORTER_ERROR, "limits": None}
