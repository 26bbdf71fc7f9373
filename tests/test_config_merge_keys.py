"""YAML merge keys (``<<: *defaults``), the usual way to share settings between many chargers, work."""

from __future__ import annotations

import pytest

from exporter.config import BasicAuth, ConfigError, parse_config

FLEET = """\
chargers:
  - &defaults
    name: garage
    url: http://192.0.2.10
    timeout: 3
    min_interval: 25
    labels: {site: depot-north}
    auth: {basic: {username: exporter, password: s3cret}}
  - <<: *defaults
    name: carport
    url: http://192.0.2.11
  - <<: *defaults
    name: visitor-bay
    url: http://192.0.2.12
    timeout: 8
"""


def test_merge_keys_share_settings_and_explicit_keys_win() -> None:
    config = parse_config(FLEET, source="pulsatrix.yml")
    assert [c.name for c in config.chargers] == ["garage", "carport", "visitor-bay"]
    assert [c.url for c in config.chargers] == ["http://192.0.2.10", "http://192.0.2.11", "http://192.0.2.12"]
    assert [c.timeout for c in config.chargers] == [3.0, 3.0, 8.0]
    assert {c.min_interval for c in config.chargers} == {25.0}
    assert {c.labels for c in config.chargers} == {(("site", "depot-north"),)}
    auth = config.chargers[1].auth
    assert isinstance(auth, BasicAuth) and auth.password.reveal() == "s3cret"


def test_a_key_written_twice_is_still_a_duplicate_next_to_a_merge() -> None:
    text = FLEET.replace("    url: http://192.0.2.11\n", "    url: http://192.0.2.11\n    url: http://192.0.2.13\n")
    with pytest.raises(ConfigError) as raised:
        parse_config(text, source="pulsatrix.yml")
    assert raised.value.problems == ["line 12, column 5: invalid YAML: duplicate key 'url'"]


def test_merging_something_that_is_not_a_mapping_is_a_one_line_error() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config("chargers:\n  - <<: 5\n    name: a\n    url: http://192.0.2.1\n", source="pulsatrix.yml")
    assert raised.value.problems == [
        "line 2, column 9: invalid YAML: expected a mapping or list of mappings for merging, but found scalar"
    ]
