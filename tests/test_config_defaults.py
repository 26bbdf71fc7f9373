"""`defaults:` and `groups:`: a fleet's shared settings written once, every charger still able to override them,
and errors that still name the charger. Configs without them keep their meaning (the rest of test_config*.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from exporter.config import BasicAuth, BearerAuth, ConfigError, Secret, load_config, parse_config
from tests.support.tls import make_pki

ROOT = Path(__file__).resolve().parent.parent
SITES_EXAMPLE = ROOT / "deploy" / "config.sites.example.yml"


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="fleet.yml", env={})
    return info.value.problems


def test_the_three_site_example_gives_each_charger_its_sites_settings(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "fleet-password").write_text("fleet-pass\n", encoding="utf-8")
    (tmp_path / "pki").mkdir()
    shutil.copy(make_pki(tmp_path / "pki") / "ca.pem", secrets / "office-ca.pem")
    config = load_config(SITES_EXAMPLE, env={"CREDENTIALS_DIRECTORY": str(secrets), "OFFICE_TOKEN": "tok-9"})
    by_name = {c.name: c for c in config.chargers}
    assert list(by_name) == ["north-01", "north-02", "north-03", "south-01", "south-02", "office-01", "office-02"]
    fleet_auth = BasicAuth(username="exporter", password=Secret("fleet-pass"))
    north = by_name["north-02"]
    assert (north.timeout, north.min_interval, north.auth, north.tls) == (3.0, 10.0, fleet_auth, None)
    assert north.labels == (("operator", "acme-fleet"), ("site", "depot-north"))
    assert by_name["south-01"].timeout == 5.0
    assert by_name["south-02"].labels == (("bay", "wash"), ("operator", "acme-fleet"), ("site", "depot-south"))
    office = by_name["office-01"]
    assert office.auth == BearerAuth(token=Secret("tok-9"))
    assert office.tls is not None and office.tls.ca_file == str(secrets / "office-ca.pem")
    assert office.labels == (("operator", "acme-fleet"), ("site", "office"))


def test_a_charger_overrides_its_group_and_the_defaults_key_by_key() -> None:
    config = parse_config(
        """
defaults: {timeout: 2, labels: {site: a, tier: gold}, auth: {bearer: {token: t-default}}}
groups:
  - labels: {site: b}
    min_interval: 20
    chargers:
      - {name: one, url: http://192.0.2.1}
      - {name: two, url: http://192.0.2.2, timeout: 7, min_interval: 0, labels: {tier: silver},
         auth: {basic: {username: u, password: p}}}
chargers:
  - {name: three, url: http://192.0.2.3}
""",
        env={},
    )
    three, one, two = config.chargers  # the top-level list first, then the groups in order
    assert (one.timeout, one.min_interval, one.labels) == (2.0, 20.0, (("site", "b"), ("tier", "gold")))
    assert one.auth == BearerAuth(token=Secret("t-default"))
    assert (two.timeout, two.min_interval, two.labels) == (7.0, 0.0, (("site", "b"), ("tier", "silver")))
    assert two.auth == BasicAuth(username="u", password=Secret("p"))
    assert (three.timeout, three.min_interval, three.labels) == (2.0, 0.0, (("site", "a"), ("tier", "gold")))
    assert config.timeout == 2.0  # the file's default timeout is the defaults' one


def test_a_default_tls_applies_to_https_chargers_only(tmp_path: Path) -> None:
    ca = make_pki(tmp_path) / "ca.pem"
    config = parse_config(
        f"""
defaults: {{tls: {{ca_file: {ca}}}}}
chargers:
  - {{name: plain, url: http://192.0.2.1}}
  - {{name: secure, url: https://192.0.2.2}}
""",
        env={},
    )
    plain, secure = config.chargers
    assert plain.tls is None
    assert secure.tls is not None and secure.tls.ca_file == str(ca)


def test_errors_in_groups_name_the_charger_and_where_it_is() -> None:
    assert problems(
        """
groups:
  - labels: {site: north}
    chargers:
      - {name: n-1, url: http://192.0.2.1}
  - labels: {site: south}
    timout: 3
    chargers:
      - {name: s-1, url: ftp://192.0.2.2}
      - {name: n-1, url: http://192.0.2.3}
"""
    ) == [
        "groups[1].timout: unknown key (did you mean 'timeout'?)",
        "groups[1].chargers[0] (s-1): url: URL scheme must be http or https, got 'ftp'",
        "groups[1].chargers[1] (n-1): name: duplicate charger name 'n-1' (also used by groups[0].chargers[0])",
    ]


def test_bad_defaults_and_groups_are_reported_with_their_key_paths() -> None:
    assert problems(
        """
timeout: 4
defaults: {timeout: 3, lables: {site: x}, labels: {job: x}}
groups:
  - labels: {site: a}
  - chargers: []
chargers: []
"""
    ) == [
        "defaults.timeout: is also set at the top level ('timeout'); set it in one place",
        "defaults.lables: unknown key (did you mean 'labels'?)",
        "defaults.labels.job: 'job' is used by the exporter itself; choose another label name",
        "groups[0].chargers: required key is missing",
        "groups[1].chargers: must list at least one charger",
    ]


def test_a_file_with_groups_needs_no_top_level_chargers_but_some_charger() -> None:
    assert problems("groups: []\n") == ["groups: must list at least one group"]
    assert problems("defaults: {timeout: 2}\n") == ["chargers: required key is missing"]
