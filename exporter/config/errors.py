"""How a config problem is reported: :class:`ConfigError` and the helpers that keep every problem one line.

The bottom layer of config loading: :mod:`exporter.config.yamlfile` (reading and YAML), :mod:`exporter.config.reader`
(the readers) and :mod:`exporter.config` / :mod:`exporter.config.web` (the two files' schemas) all report through it.
A value from the file is only ever shown through :func:`show` or :func:`describe` (escaped, cut), a credential
only through :func:`kind` (what it is, never what it says).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

MAX_PROBLEMS_SHOWN = 100
# Characters that would break a one-line message or a header: C0/C1 controls, DEL, the Unicode line separators.
CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class ConfigError(Exception):
    """All problems found in one config file."""

    kind = "config"  # the word in the first line of the message: "<file>: 2 problems in config"

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        # Every problem is one line whatever the file held: control characters are escaped, long values cut.
        self.source = escape(source)
        self.problems = [escape(p) if len(p) <= 500 else escape(p[:500]) + "…" for p in problems]
        super().__init__(self.message())

    def message(self) -> str:
        """The problems, one line each under a head line naming the file and how many there are."""
        n = len(self.problems)
        head = f"{self.source}: {n} problem{'s' if n != 1 else ''} in {self.kind}"
        lines = [head, *(f"  {self.source}: {p}" for p in self.problems[:MAX_PROBLEMS_SHOWN])]
        if n > MAX_PROBLEMS_SHOWN:
            lines.append(f"  {self.source}: ... and {n - MAX_PROBLEMS_SHOWN} more problems")
        return "\n".join(lines)


def join(path: str, key: str) -> str:
    """The key path of ``key`` below ``path`` (``chargers[1]`` + ``url``); a top-level key is its own path."""
    return f"{path}.{key}" if path else key


def describe(value: Any) -> str:
    """What a (non-secret) value from the file is, fit for a message: ``a string ('x')``, ``int (3)``."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"a string ({escape(repr(value))})" if len(value) < 40 else "a string"
    if isinstance(value, set | tuple | bytes):
        return f"a YAML {type(value).__name__}"
    return f"{type(value).__name__} ({show(value)})"


def kind(value: Any) -> str:
    """What kind of value this is, without showing it (for credentials)."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a mapping" if isinstance(value, Mapping) else "a list" if isinstance(value, list) else "another type"


def escape(text: str) -> str:
    """Control characters as escapes (``\\n``), so that a message stays on one line."""
    return CONTROL_RE.sub(lambda m: repr(m.group())[1:-1], text)


def show(value: object, limit: int = 60) -> str:
    """A key or value from the file, fit for a one-line message: escaped and at most ``limit`` characters."""
    if value is None or isinstance(value, bool):
        return str(value).lower().replace("none", "null")
    text = escape(value if isinstance(value, str) else repr(value))
    return text if len(text) <= limit else text[:limit] + "…"


__all__ = ["CONTROL_RE", "MAX_PROBLEMS_SHOWN", "ConfigError", "describe", "escape", "join", "kind", "show"]
