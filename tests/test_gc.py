"""The exporter process tunes its garbage collector once started (bench/fleet.py shows what it saves)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from exporter.config import ChargerConfig, Config
from exporter.serve.app import EXPORTER, GC_THRESHOLDS, create_app
from tests.support.fleet import ClientFactory


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


async def test_started_app_freezes_its_start_up_objects(aiohttp_client: ClientFactory, restore_gc: None) -> None:
    gc.unfreeze()
    config = Config(chargers=(ChargerConfig("garage", "http://192.0.2.1"),))
    client = await aiohttp_client(create_app(config, tune_gc=True))
    assert client.app is not None and client.app[EXPORTER].fleet.pollers  # the pollers existed before the freeze
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == GC_THRESHOLDS
    assert (await client.get("/-/ready")).status == 200


async def test_apps_in_tests_leave_the_collector_alone(aiohttp_client: ClientFactory, restore_gc: None) -> None:
    gc.unfreeze()
    before = gc.get_threshold()
    await aiohttp_client(create_app(Config(chargers=(ChargerConfig("garage", "http://192.0.2.1"),))))
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before
