"""Issue 20: libyaml (the C loader) reads config files, and nothing a user sees changes: whatever the text, loading
it with the C loader gives the same data, or the same problems at the same positions, as the pure loader alone
(what every release before it did)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.config import ConfigError, parse_config, yamlfile
from tests.support.yaml_tokens import TOKENS

CONF = Path(__file__).parent / "fixtures" / "config"
GOOD = (CONF / "good.yml").read_text()
FUZZ = settings(
    max_examples=int(os.environ.get("PULSATRIX_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

pytestmark = pytest.mark.skipif(not yamlfile._FAST, reason="PyYAML without libyaml: there is one loader only")


@contextmanager
def pure_only() -> Iterator[None]:
    with mock.patch.object(yamlfile, "_FAST", False):
        yield


def outcome(text: str) -> tuple[str, str]:
    """What load_yaml gives for ``text``: the data (as its repr, so that NaN equals NaN) or the problems."""
    try:
        return "data", repr(yamlfile.load_yaml(text, "t.yml", max_chars=4 * 1024 * 1024))
    except ConfigError as exc:
        return "error", exc.message()


def assert_same_as_pure(text: str) -> None:
    fast = outcome(text)
    with pure_only():
        pure = outcome(text)
    assert fast == pure


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=60))
def test_token_soup_reads_as_with_the_pure_loader(tokens: list[str]) -> None:
    assert_same_as_pure("".join(tokens))


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(GOOD)), st.integers(0, 8), st.text(max_size=6)), max_size=6))
def test_mutated_configs_read_as_with_the_pure_loader(edits: list[tuple[int, int, str]]) -> None:
    text = GOOD
    for position, removed, inserted in edits:
        text = text[:position] + inserted + text[position + removed :]
    assert_same_as_pure(text)


@FUZZ
@given(st.text(max_size=200))
def test_arbitrary_text_reads_as_with_the_pure_loader(text: str) -> None:
    assert_same_as_pure(text)


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\na: 2\n",  # duplicate key
        "chargers:\n  - {name: x, name: y}\n",
        "a: " + "[" * 31 + "1" + "]" * 31 + "\n",  # 32 levels: within the limit
        "a: " + "[" * 32 + "1" + "]" * 32 + "\n",  # 33: one too deep
        "a: " + "[" * 32 + "]" * 32 + "\n",  # an empty list at level 32: allowed
        "a: " + "[" * 5000 + "]" * 5000 + "\n",  # past libyaml's own limit of 1,000 levels
        "a: &a [*a]\n",  # an alias inside its own anchor
        "a: &a [1, 2]\nb: [*a, *a, {c: *a}]\n",
        "password: *undefined\n",  # the secret-safe wording
        "token: !secret x\n",
        "when: 2001-13-45\n",  # a value that does not convert
        "n: !!int abc\n",
        "a: 1\n---\nb: 2\n",  # two documents
        "a: 'unterminated\n",
        "a:\tb\n",
        "a: \x00\n",
        "? [1, 2]\n: x\n",  # a list as a key
        "<<: {a: 1}\na: 2\n",  # a merge key: explicit keys win
        "",
        "# only a comment\n",
    ],
)
def test_edge_cases_read_as_with_the_pure_loader(text: str) -> None:
    assert_same_as_pure(text)


@pytest.mark.parametrize("name", sorted(p.name for p in CONF.glob("*.yml")))
def test_every_config_fixture_reads_as_with_the_pure_loader(name: str) -> None:
    """The fixtures hold every refusal the config tests assert (alias bomb, depth, NUL, binary...)."""
    assert_same_as_pure((CONF / name).read_bytes().decode("utf-8", "replace"))


def test_a_good_file_is_read_by_libyaml_alone() -> None:
    """The pure loader is only there for a text libyaml refuses: a good config never reaches it."""
    with mock.patch.object(yamlfile, "_UniqueKeyLoader", side_effect=AssertionError("pure loader used")):
        config = parse_config(GOOD, source="good.yml", env={"OFFICE_TOKEN": "tok"}, base_dir=CONF)
    assert [c.name for c in config.chargers] == ["garage", "depot-3-bay-12", "office"]


def test_without_libyaml_the_pure_loader_reads_the_file() -> None:
    with pure_only(), mock.patch.object(yamlfile, "_FastLoader", side_effect=AssertionError("C loader used")):
        config = parse_config(GOOD, source="good.yml", env={"OFFICE_TOKEN": "tok"}, base_dir=CONF)
    assert len(config.chargers) == 3
    assert yaml.__with_libyaml__  # and on this machine the C loader is there to be used
