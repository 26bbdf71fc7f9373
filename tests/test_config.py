"""Config loading: one fixture file per failure mode, every message naming the file, the key path and the problem."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from exporter.config import (
    MAX_CONFIG_BYTES,
    BasicAuth,
    BearerAuth,
    ConfigError,
    Secret,
    load_config,
    parse_config,
)
from tests.support.cli import run

CONF = Path(__file__).parent / "fixtures" / "config"


def problems(name: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(CONF / name, env=env or {})
    assert info.value.source == str(CONF / name)
    return info.value.problems


def test_good_config_loads_every_feature() -> None:
    config = load_config(CONF / "good.yml", env={"OFFICE_TOKEN": "tok-123"})
    assert config.timeout == 4.0
    garage, bay, office = config.chargers
    assert (garage.name, garage.url, garage.timeout, garage.labels, garage.auth) == (
        "garage",
        "http://192.0.2.10",
        4.0,
        (),
        None,
    )
    assert bay.url == "https://bay12.depot3.example.net"  # trailing slash dropped; /api/v1/... is appended
    assert bay.timeout == 2.5
    assert bay.labels == (("site", "depot-3"), ("zone", "north"))
    assert bay.auth == BasicAuth(username="exporter", password=Secret("s3cr3t-from-file"))
    assert bay.tls is not None
    assert bay.tls.ca_file == str(CONF / "secrets" / "ca.pem")
    assert office.url == "http://[2001:db8::20]:8080"
    assert office.auth == BearerAuth(token=Secret("tok-123"))


def test_secrets_never_show_in_repr() -> None:
    config = load_config(CONF / "good.yml", env={"OFFICE_TOKEN": "tok-123"})
    text = repr(config)
    assert "s3cr3t-from-file" not in text
    assert "tok-123" not in text
    assert "Secret('********')" in text


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        (
            "unknown-key.yml",
            [
                "chargers[0] (garage): ulr: unknown key (did you mean 'url'?)",
                "chargers[0] (garage): url: required key is missing",
            ],
        ),
        (
            "missing-keys.yml",
            ["chargers[0].name: required key is missing", "chargers[1] (carport): url: required key is missing"],
        ),
        (
            "duplicate-names.yml",
            ["chargers[1] (garage): name: duplicate charger name 'garage' (also used by chargers[0])"],
        ),
        (
            "bad-scheme.yml",
            [
                "chargers[0] (garage): url: URL scheme must be http or https, got 'ftp'",
                "chargers[1] (carport): url: URL scheme must be http or https, got none",
            ],
        ),
        (
            "unset-env.yml",
            ["chargers[0] (office): auth.bearer.token: environment variable 'PULSATRIX_TEST_UNSET_TOKEN' is not set"],
        ),
        (
            "unreadable-file.yml",
            [
                "chargers[0] (office): auth.basic.password_file: "
                f"cannot read file '{CONF / 'secrets' / 'does-not-exist'}': "
                "No such file or directory"
            ],
        ),
        ("both-auth.yml", ["chargers[0] (office): auth: needs exactly one of 'basic' or 'bearer'"]),
        (
            "credentials-in-url.yml",
            [
                "chargers[0] (office): url: credentials in the URL are not allowed; "
                "use 'auth.basic' (with 'password_file')"
            ],
        ),
        (
            "bad-labels.yml",
            [
                "chargers[0] (office): labels.charger: "
                "'charger' is used by the exporter itself; choose another label name",
                "chargers[0] (office): labels.bad-name: 'bad-name' is not a valid Prometheus label name",
            ],
        ),
        (
            "bad-values.yml",
            [
                "timeout: must be greater than 0 and at most 300, got -1",
                "chargers[0].name: 'has space' is not a valid charger name (1-64 characters: letters, digits, "
                "'_', '.', '-'; starting with a letter or digit)",
                "chargers[0].timeout: must be a number of seconds, got 'soon'",
                "chargers[0].tls.insecure_skip_verify: must be true or false, got a string ('yes')",
                "chargers[0].tls: is only used with an https:// URL",
            ],
        ),
        (
            "unquoted-numbers.yml",
            [
                "chargers[0].name: must be a string, got int (1); put the value in quotes",
                "chargers[0].labels.zone: must be a string, got int (8); put the value in quotes",
                "chargers[0].auth.basic.password: must be a string, got a number; put the value in quotes",
            ],
        ),
        (
            "multiline-secret.yml",
            [
                "chargers[0] (office): auth.bearer.token_file: contains a control character (a line break?); "
                "credentials must be one line"
            ],
        ),
        (
            "tls-conflicts.yml",
            ["chargers[0] (office): tls: 'ca_file' and 'insecure_skip_verify: true' contradict each other; choose one"],
        ),
        (
            "invalid-yaml.yml",
            ["line 4, column 4: invalid YAML: expected <block end>, but found '<block mapping start>'"],
        ),
        ("empty.yml", ["the file is empty; it needs at least a 'chargers' list"]),
        ("deep-nesting.yml", ["line 2, column 42: invalid YAML: nested more than 32 levels deep"]),
        ("deep-mapping.yml", ["line 33, column 63: invalid YAML: nested more than 32 levels deep"]),
        (
            "alias-bomb.yml",
            ["line 7, column 45: invalid YAML: more than 1,000,000 values with aliases expanded (alias bomb?)"],
        ),
        (
            "control-characters.yml",
            [
                "chargers[0].name: contains the control character \\r (a line break or tab?)",
                "chargers[0].labels.site: contains the control character \\t (a line break or tab?)",
                "chargers[0].labels.zone\\n: 'zone\\n' is not a valid Prometheus label name",
            ],
        ),
        (
            "url-invalid-characters.yml",
            [
                "chargers[0] (a): url: is not a valid URL: ' ' is not allowed in a URL; percent-encode it",
                "chargers[1] (b): url: is not a valid URL: 'ä' is not allowed in a URL; percent-encode it",
                "chargers[2] (c): url: is not a valid URL: 'bad_host$name' is not a host name or IP address",
                "chargers[3] (d): url: is not a valid URL: '%' must be followed by two hex digits",
                "chargers[4] (e): url: is not a valid URL: port 0",
            ],
        ),
        (
            "non-string-keys.yml",
            [
                "1: a key must be a string, got int (1)",
                "null: a key must be a string, got nothing (null)",
                "chargers[0] (garage): true: a key must be a string, got a boolean (true)",
            ],
        ),
        ("unhashable-key.yml", ["line 4, column 7: invalid YAML: a key must be a string, got a list"]),
        (
            "bad-yaml-value.yml",
            ["line 1, column 10: invalid YAML: cannot read 2001-13-45 as a timestamp (quote it if it is text)"],
        ),
        (
            "nul-byte.yml",
            ["line 2, column 14: invalid YAML: the character U+0000 is not allowed in YAML (binary data?)"],
        ),
        ("binary.yml", ["config file is not UTF-8 text (byte 0 is 0x89)"]),
        (
            "many-problems.yml",
            [
                "timout: unknown key (did you mean 'timeout'?)",
                "chargers[0] (garage): ulr: unknown key (did you mean 'url'?)",
                "chargers[0] (garage): url: required key is missing",
                "chargers[1] (garage): url: URL scheme must be http or https, got 'gopher'",
                "chargers[1] (garage): auth.bearer.token_file: "
                "cannot read file '/nonexistent/token': No such file or directory",
                "chargers[1] (garage): name: duplicate charger name 'garage' (also used by chargers[0])",
            ],
        ),
    ],
)
def test_every_config_error_is_reported_with_its_key_path(fixture: str, expected: list[str]) -> None:
    assert problems(fixture) == expected


def test_duplicate_names_are_found_after_variable_expansion() -> None:
    assert problems("duplicate-after-env.yml", env={"FIRST": "garage", "SECOND": "garage"}) == [
        "chargers[1] (garage): name: duplicate charger name 'garage' (also used by chargers[0])"
    ]


def test_rendered_error_names_the_file_on_every_line() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(CONF / "many-problems.yml", env={})
    lines = info.value.message().splitlines()
    assert lines[0] == f"{CONF / 'many-problems.yml'}: 6 problems in config"
    assert all(line.startswith(f"  {CONF / 'many-problems.yml'}: ") for line in lines[1:])


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(CONF / "nope.yml")
    assert info.value.problems == ["cannot read config file: No such file or directory"]


def test_env_substitution_everywhere_and_dollar_escape() -> None:
    text = """
chargers:
  - name: ${NAME}
    url: http://${HOST}:8080/prefix
    labels: {site: "cost-$$5-${SITE}"}
    auth: {basic: {username: "${USER_}", password: "${PW}"}}
"""
    env = {"NAME": "garage", "HOST": "192.0.2.1", "SITE": "home", "USER_": "u", "PW": "p@ss"}
    charger = parse_config(text, env=env).chargers[0]
    assert (charger.name, charger.url, charger.labels) == (
        "garage",
        "http://192.0.2.1:8080/prefix",
        (("site", "cost-$5-home"),),
    )
    assert charger.auth == BasicAuth("u", Secret("p@ss"))


def test_duplicate_yaml_keys_are_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("chargers: []\nchargers: []\n", source="dup.yml")
    assert info.value.problems == ["line 2, column 1: invalid YAML: duplicate key 'chargers'"]


def test_invalid_ca_bundle(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("garbage\n")
    text = "chargers:\n  - name: a\n    url: https://192.0.2.1\n    tls: {ca_file: ca.pem}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, base_dir=tmp_path)
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith(
        f"chargers[0] (a): tls.ca_file: '{tmp_path / 'ca.pem'}' is not a PEM certificate bundle"
    )


def test_secret_values_never_appear_in_error_messages() -> None:
    text = "chargers:\n  - name: a\n    url: http://192.0.2.1\n    auth: {bearer: {token: hunter2, token_file: x}}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert "hunter2" not in info.value.message()


@pytest.mark.parametrize(
    ("auth", "key"),
    [
        ("{basic: {username: u, password: 73019561}}", "auth.basic.password"),
        ("{bearer: {token: 73019561}}", "auth.bearer.token"),
        ("{bearer: {token: [73019561]}}", "auth.bearer.token"),
    ],
)
def test_a_wrongly_typed_inline_secret_is_named_but_never_shown(auth: str, key: str) -> None:
    text = f"chargers:\n  - name: a\n    url: http://192.0.2.1\n    auth: {auth}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    rendered = info.value.message()
    assert f"chargers[0] (a): {key}: must be a string, got a" in rendered
    assert "73019561" not in rendered


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run(*args, env={"OFFICE_TOKEN": "tok-123"})


def test_check_config_cli_good() -> None:
    proc = run_cli("--config", str(CONF / "good.yml"), "--check-config")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (
        f"{CONF / 'good.yml'}: OK, 3 chargers (garage, depot-3-bay-12, office), 2 with auth, default timeout 4s\n"
    )


def test_check_config_cli_bad_prints_every_problem_without_traceback() -> None:
    proc = run_cli("--config", str(CONF / "many-problems.yml"), "--check-config")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[0] == f"{CONF / 'many-problems.yml'}: 6 problems in config"
    assert "chargers[0] (garage): ulr: unknown key (did you mean 'url'?)" in proc.stderr


def test_bad_config_without_check_flag_exits_non_zero_before_listening() -> None:
    proc = run_cli("--config", str(CONF / "bad-scheme.yml"), "--listen", "127.0.0.1:0")
    assert proc.returncode == 1
    assert "chargers[0] (garage): url: URL scheme must be http or https, got 'ftp'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_huge_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yml"
    with huge.open("w") as f:
        f.write("chargers:\n")
        while f.tell() <= MAX_CONFIG_BYTES:
            f.write("  - {name: garage, url: 'http://192.0.2.10'}\n" * 1000)
    with pytest.raises(ConfigError) as info:
        load_config(huge)
    assert info.value.problems == ["config file is larger than the limit of 4 MiB"]
    with pytest.raises(ConfigError) as info:
        load_config("/dev/zero")  # endless: only MAX_CONFIG_BYTES + 1 bytes are read
    assert info.value.problems == ["config file is larger than the limit of 4 MiB"]


def test_a_directory_as_config_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert (info.value.source, info.value.problems) == (str(tmp_path), ["is a directory, not a config file"])


def test_an_endless_or_huge_secret_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "big").write_text("x" * (64 * 1024 + 1))
    text = "chargers:\n" + "".join(
        f"  - {{name: c{i}, url: 'http://192.0.2.1', auth: {{bearer: {{token_file: {f}}}}}}}\n"
        for i, f in enumerate(["/dev/zero", "big"])
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, base_dir=tmp_path)
    assert info.value.problems == [
        "chargers[0] (c0): auth.bearer.token_file: file '/dev/zero' is larger than 64 KiB; a secret is one line",
        f"chargers[1] (c1): auth.bearer.token_file: file '{tmp_path / 'big'}' is larger than 64 KiB; "
        "a secret is one line",
    ]


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "bom.yml").write_bytes(b"\xef\xbb\xbfchargers: [{name: a, url: 'http://192.0.2.1'}]\n")
    assert load_config(tmp_path / "bom.yml").chargers[0].name == "a"


def test_a_name_or_label_with_a_trailing_line_break_is_refused() -> None:
    """The old patterns ended in "$", which also matches before a final newline."""
    with pytest.raises(ConfigError) as info:
        parse_config('chargers: [{name: "garage\\n", url: "http://192.0.2.1", labels: {"site\\n": x}}]')
    assert info.value.problems == [
        "chargers[0].name: contains the control character \\n (a line break or tab?)",
        "chargers[0].labels.site\\n: 'site\\n' is not a valid Prometheus label name",
    ]


def test_an_anchor_reused_a_few_times_is_fine() -> None:
    text = """
chargers:
  - name: a
    url: http://192.0.2.1
    auth: &auth {basic: {username: exporter, password: "pw"}}
    labels: &labels {site: depot-3}
  - name: b
    url: http://192.0.2.2
    auth: *auth
    labels: *labels
"""
    a, b = parse_config(text).chargers
    assert a.auth == b.auth == BasicAuth("exporter", Secret("pw"))
    assert a.labels == b.labels == (("site", "depot-3"),)


def test_valid_urls_still_pass() -> None:
    urls = [
        "http://192.0.2.1",
        "https://bay-12.depot_3.example.net:8443/pulsatrix",
        "http://[2001:db8::1]:8080",
        "http://charger.local./a%20b",
    ]
    text = "chargers:\n" + "".join(f"  - {{name: c{i}, url: '{u}'}}\n" for i, u in enumerate(urls))
    assert [c.url for c in parse_config(text).chargers] == urls


def test_a_thousand_problems_are_summed_up_after_the_first_hundred() -> None:
    text = "chargers:\n" + "".join(f"  - {{name: c{i}, url: 'ftp://x'}}\n" for i in range(1000))
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="big.yml")
    lines = info.value.message().splitlines()
    assert lines[0] == "big.yml: 1000 problems in config"
    assert len(lines) == 102
    assert lines[-1] == "  big.yml: ... and 900 more problems"


@pytest.mark.parametrize(
    "fixture", ["deep-nesting.yml", "alias-bomb.yml", "binary.yml", "control-characters.yml", "non-string-keys.yml"]
)
def test_check_config_cli_odd_files_give_one_line_errors_without_traceback(fixture: str) -> None:
    proc = run_cli("--config", str(CONF / fixture), "--check-config")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(f"{CONF / fixture}: ")
    assert len(lines) == 1 + len(problems(fixture))
    assert all(line.startswith(f"  {CONF / fixture}: ") for line in lines[1:])


def test_a_named_pipe_as_secret_or_config_file_is_refused_instead_of_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "token"
    os.mkfifo(fifo)  # no writer: a blocking open would wait forever (and hold a reload)
    text = "chargers: [{name: a, url: 'http://192.0.2.1', auth: {bearer: {token_file: token}}}]\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, base_dir=tmp_path)
    assert info.value.problems == [
        f"chargers[0] (a): auth.bearer.token_file: cannot read file '{fifo}': is a named pipe, not a file"
    ]
    with pytest.raises(ConfigError) as info:
        load_config(fifo)
    assert info.value.problems == ["cannot read config file: is a named pipe, not a file"]


def test_a_problem_inside_a_charger_names_the_charger_when_its_name_is_valid() -> None:
    text = (
        "chargers:\n"
        "  - {name: '${BAY}', url: 'ftp://192.0.2.1'}\n"  # the name after ${VAR} expansion
        "  - {name: 'bad name', url: 'ftp://192.0.2.2'}\n"  # no valid name: the index alone
        "  - {url: 'ftp://192.0.2.3'}\n"
        "  - 7\n"
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={"BAY": "bay-12"})
    assert info.value.problems == [
        "chargers[0] (bay-12): url: URL scheme must be http or https, got 'ftp'",
        "chargers[1].name: 'bad name' is not a valid charger name (1-64 characters: letters, digits, '_', '.', '-'; "
        "starting with a letter or digit)",
        "chargers[1].url: URL scheme must be http or https, got 'ftp'",
        "chargers[2].name: required key is missing",
        "chargers[2].url: URL scheme must be http or https, got 'ftp'",
        "chargers[3]: must be a mapping, got int (7)",
    ]
