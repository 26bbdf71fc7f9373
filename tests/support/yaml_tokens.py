"""Pieces of YAML and of config files that the config property tests (tests/test_config_fuzz.py,
tests/test_config_fast_yaml.py) join into texts: keys, indentation, flow syntax, anchors, tags, awkward values."""

from __future__ import annotations

TOKENS = [
    "chargers:", "timeout:", "name:", "url:", "labels:", "auth:", "basic:", "bearer:", "tls:", "username:",
    "password:", "password_file:", "token:", "token_file:", "ca_file:", "insecure_skip_verify:", "site:",
    "- ", "? ", ": ", "\n", "\n  ", "\n    ", "  ", "[", "]", "{", "}", ", ", "&a ", "*a", "&b ", "*b", "<<: *a",
    "!!int ", "!!float ", "!!binary ", "!!timestamp ", "!!set ", "!!python/object ", "!!str ", "--- ", "...",
    "'", '"', "#", "|", ">", "%YAML 1.1\n", "\t", "\\x00", "\\n", "\x85", "\u2028", "\ufeff", "~", "null", "true",
    "1e400", "9" * 50, "-1", "0x1F", "0755", "2001-13-45", "12:30:00", ".nan", ".inf",
    "http://192.0.2.1", "https://a b", "http://[::1", "http://a:99999", "ftp://x", "http://u:p@h", "%zz",
    "${OFFICE_TOKEN}", "${UNSET}", "${", "$$", "secrets/ca.pem", "secrets/bay12-password", "/dev/null", "garage",
    "ä", "😀", "\\", "=",
]  # fmt: skip
