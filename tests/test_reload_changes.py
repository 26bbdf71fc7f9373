"""What a reload says it changed: exporter.serve.reload.describe_changes over two configs, and its HTTP answer and
log."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from exporter.config import BasicAuth, ChargerConfig, Config, TLSConfig
from exporter.config.reader import Secret
from exporter.serve.reload import describe_changes
from tests.support.fleet import ClientFactory, SimulatedFleet, start, write_config

GARAGE = ChargerConfig("garage", "http://192.0.2.1", labels=(("site", "home"),))
CARPORT = ChargerConfig("carport", "http://192.0.2.2", auth=BasicAuth("exporter", Secret("old-secret")))
BAY = ChargerConfig("bay", "http://192.0.2.3")


def test_an_unchanged_config_says_no_changes() -> None:
    config = Config(chargers=(GARAGE, CARPORT))
    assert describe_changes(config, replace(config, source="other.yml")) == "no changes"


def test_added_removed_and_changed_chargers_are_named_with_the_keys_that_changed() -> None:
    old = Config(chargers=(GARAGE, CARPORT, BAY))
    new = Config(
        chargers=(
            replace(GARAGE, url="http://192.0.2.9", labels=(("site", "work"),), timeout=2.0),
            replace(CARPORT, auth=BasicAuth("exporter", Secret("new-secret")), tls=TLSConfig(ca_file="/ca.pem")),
            ChargerConfig("visitor", "http://192.0.2.4"),
        )
    )
    assert describe_changes(old, new) == (
        "added 1: visitor; removed 1: bay; changed 2: garage (url, timeout, labels), carport (auth, tls)"
    )


def test_settings_changed_show_old_and_new_values_and_secrets_never_appear() -> None:
    old = Config(chargers=(CARPORT,), max_concurrency=None, keepalive_timeout=300.0)
    new = Config(
        chargers=(replace(CARPORT, auth=BasicAuth("exporter", Secret("hunter2"))),),
        max_concurrency=50,
        keepalive_timeout=60.0,
        timeout=7.5,
    )
    text = describe_changes(old, new)
    assert text == (
        "changed 1: carport (auth); settings: timeout 5 -> 7.5, max_concurrency none -> 50, keepalive_timeout 300 -> 60"
    )
    assert "hunter2" not in text and "old-secret" not in text


def test_a_long_list_names_twenty_and_counts_the_rest() -> None:
    new = Config(chargers=tuple(ChargerConfig(f"bay-{i:03}", f"http://192.0.2.{i}") for i in range(25)))
    text = describe_changes(Config(chargers=()), new)
    assert text == "added 25: " + ", ".join(f"bay-{i:03}" for i in range(20)) + " and 5 more"


async def test_post_reload_answers_and_logs_what_changed(
    fleet: SimulatedFleet, aiohttp_client: ClientFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="exporter.reload")
    path = write_config(tmp_path / "pulsatrix.yml", fleet, ["garage", "carport"])
    client = await start(aiohttp_client, path)
    write_config(path, fleet, ["garage", "visitor-bay"], max_concurrency=4, garage={"labels": {"site": "work"}})
    response = await client.post("/-/reload")
    assert response.status == 200
    changes = (
        "added 1: visitor-bay; removed 1: carport; changed 1: garage (labels); settings: max_concurrency none -> 4"
    )
    summary = f"{path}: OK, 2 chargers (garage, visitor-bay), 0 with auth, default timeout 2s"
    body = await response.text()
    assert body == f"config reloaded: {summary}; {changes}\n"
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("config reloaded")]
    assert logged == [f"config reloaded: {body.removeprefix('config reloaded: ').strip()}"]
