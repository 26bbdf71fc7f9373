"""Property tests: whatever a config file holds, loading it gives a Config or a ConfigError, never another exception,
and every line of the error names the file and stays one line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.config import Config, ConfigError, parse_config
from exporter.config.errors import CONTROL_RE
from tests.support.yaml_tokens import TOKENS

CONF = Path(__file__).parent / "fixtures" / "config"
SOURCE = "fuzz/pulsatrix.yml"
GOOD = (CONF / "good.yml").read_text()
ENV = {"OFFICE_TOKEN": "tok-123", "PW": "pw"}
# 300 examples per property in CI; a longer run: PULSATRIX_FUZZ_EXAMPLES=5000 pytest tests/test_config_fuzz.py
FUZZ = settings(
    max_examples=int(os.environ.get("PULSATRIX_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def check(text: str) -> None:
    try:
        result = parse_config(text, source=SOURCE, env=ENV, base_dir=CONF)
    except ConfigError as exc:
        assert exc.source == SOURCE
        assert exc.problems, "an error lists at least one problem"
        lines = exc.message().splitlines()
        assert lines[0].startswith(f"{SOURCE}: ")
        assert all(line.startswith(f"  {SOURCE}: ") for line in lines[1:])
        assert len(lines) == 1 + min(len(exc.problems), 100) + (len(exc.problems) > 100)
        assert not any(CONTROL_RE.search(p) for p in exc.problems), "a problem stays on one line"
        assert "tok-123" not in exc.message()
    else:
        assert isinstance(result, Config)
        assert result.chargers


@FUZZ
@given(st.text(max_size=400))
def test_arbitrary_text(text: str) -> None:
    check(text)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=60))
def test_yaml_like_token_soup(tokens: list[str]) -> None:
    check("".join(tokens))


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(GOOD)), st.integers(0, 8), st.text(max_size=6)), max_size=6))
def test_mutations_of_a_good_config(edits: list[tuple[int, int, str]]) -> None:
    text = GOOD
    for position, removed, inserted in edits:
        text = text[:position] + inserted + text[position + removed :]
    check(text)


KEYS = [
    "chargers", "timeout", "name", "url", "labels", "auth", "basic", "bearer", "tls", "username", "password",
    "token", "ca_file", "insecure_skip_verify", "site", "simulated", "__x", "bad key", "",
]  # fmt: skip
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["http://192.0.2.1", "https://192.0.2.2/x", "garage", "5", "secrets/ca.pem"]),
    st.text(max_size=20),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8), st.integers(-3, 3), st.none(), st.booleans())
structures = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=25,
)


@FUZZ
@given(st.dictionaries(st.sampled_from(KEYS), structures, max_size=4))
def test_arbitrary_yaml_structures(document: dict[str, Any]) -> None:
    check(yaml.safe_dump(document, allow_unicode=True))


@FUZZ
@given(
    st.lists(
        st.fixed_dictionaries(
            {"name": scalars, "url": scalars},
            optional={"labels": structures, "auth": structures, "tls": structures, "timeout": scalars},
        ),
        max_size=4,
    )
)
def test_arbitrary_chargers(chargers: list[dict[str, Any]]) -> None:
    check(yaml.safe_dump({"chargers": chargers}, allow_unicode=True))
