"""A password or token that is not valid YAML as written is never quoted back by the error about it.

PyYAML names an undefined alias, an unknown tag or a value it cannot convert in its message; unquoted generated
passwords often start with '*' or '!'. The message goes to stderr (--check-config), to the log and into the body of
``POST /-/reload``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from exporter.config import ConfigError, load_config, parse_config
from exporter.serve.app import create_app
from tests.support.fleet import ClientFactory, SimulatedFleet

CHARGER = "chargers:\n  - name: garage\n    url: {url}\n    auth:\n      basic:\n        username: exporter\n"


@pytest.mark.parametrize(
    ("line", "column"),
    [
        ("        password: *Sup3rSecret42", 19),  # YAML: an alias
        ("        password: !Sup3rSecret42 x", 19),  # YAML: a tag
        ("        password: 2024-13-42", 19),  # YAML: a timestamp that does not exist
        ("        password: |Sup3rSecret42", 20),
    ],
)
def test_an_unreadable_password_is_not_quoted_in_the_error(line: str, column: int) -> None:
    text = CHARGER.format(url="http://127.0.0.1:1") + line + "\n"
    with pytest.raises(ConfigError) as raised:
        parse_config(text, source="pulsatrix.yml")
    assert raised.value.problems == [
        f"line 7, column {column}: invalid YAML: the value of 'password' is not valid YAML as written (not shown); "
        "put it in single quotes"
    ]
    assert "Sup3rSecret42" not in str(raised.value) and "2024-13-42" not in str(raised.value)


def test_an_unreadable_bearer_token_in_flow_style_is_not_quoted() -> None:
    text = "chargers:\n  - {name: garage, url: 'http://127.0.0.1:1', auth: {bearer: {token: *T0kenT0ken}}}\n"
    with pytest.raises(ConfigError) as raised:
        parse_config(text, source="pulsatrix.yml")
    assert "T0kenT0ken" not in str(raised.value)
    assert "the value of 'token' is not valid YAML as written (not shown)" in str(raised.value)


def test_other_yaml_errors_still_quote_what_they_found() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config("chargers:\n  - name: *garage\n", source="pulsatrix.yml")
    assert raised.value.problems == ["line 2, column 11: invalid YAML: found undefined alias 'garage'"]


async def test_a_reload_with_an_unreadable_password_never_returns_or_logs_it(
    fleet: SimulatedFleet, aiohttp_client: ClientFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "pulsatrix.yml"
    path.write_text(CHARGER.format(url=f"{fleet.base_url}/garage") + "        password: 'fine'\n")
    client = await aiohttp_client(create_app(load_config(path), enable_lifecycle=True))
    path.write_text(CHARGER.format(url=f"{fleet.base_url}/garage") + "        password: *Sup3rSecret42\n")
    response = await client.post("/-/reload")
    body = await response.text()
    assert response.status == 500
    assert "the value of 'password' is not valid YAML as written (not shown)" in body
    assert "Sup3rSecret42" not in body
    assert "Sup3rSecret42" not in caplog.text
