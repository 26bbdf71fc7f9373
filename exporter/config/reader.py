"""The readers a config schema is written with: :class:`Reader` walks the raw YAML tree of one file, converts
values and collects every problem with its key path (``chargers[1].url``), so that a file's problems are reported
all at once. :mod:`exporter.config.schema` and :mod:`exporter.config.web` build their schemas on it.

Secrets are wrapped in :class:`Secret` so that they never show up in a ``repr``, a log line or an error message.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from exporter.config.errors import CONTROL_RE, describe, escape, join, kind, show
from exporter.config.yamlfile import read_bounded

MAX_SECRET_BYTES = 64 * 1024
ENV_RE = re.compile(r"\$\$|\$\{([^}]*)\}")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Secret:
    """A credential. Its ``repr``/``str`` never reveal the value; call :meth:`reveal` where it is really needed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class Reader:
    """Reads the values of one file: each method checks one value at a key path and returns it converted, or
    records the problem (:attr:`problems`) and returns None. ``${VAR}`` in strings is expanded from ``env``;
    relative file names are relative to ``base_dir``."""

    def __init__(self, source: str, env: Mapping[str, str], base_dir: Path) -> None:
        self.source = source
        self.env = env
        self.base_dir = base_dir
        self.problems: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}" if path else message)

    # -- primitive readers -------------------------------------------------------------------------------

    def keys(self, path: str, obj: Mapping[Any, Any], allowed: Sequence[str], required: Sequence[str]) -> None:
        for key in obj:
            if not isinstance(key, str):
                self.error(join(path, show(key)), f"a key must be a string, got {describe(key)}")
            elif key not in allowed:
                hint = difflib.get_close_matches(key[:100], allowed, n=1)
                extra = f" (did you mean '{hint[0]}'?)" if hint else f" (allowed: {', '.join(allowed)})"
                self.error(join(path, show(key)), f"unknown key{extra}")
        for key in required:
            if key not in obj:
                self.error(join(path, key), "required key is missing")

    def mapping(self, path: str, value: Any) -> Mapping[str, Any] | None:
        if not isinstance(value, Mapping):
            self.error(path, f"must be a mapping, got {describe(value)}")
            return None
        return value

    def string(self, path: str, value: Any, *, secret: bool = False) -> str | None:
        if not isinstance(value, str):
            # YAML turns unquoted 0755 into 493 and 1_000 into 1000: never guess, ask for quotes.
            hint = "; put the value in quotes" if isinstance(value, bool | int | float) else ""
            # A credential's value is never shown, not even a wrongly typed one: only what kind of value it is.
            got = kind(value) if secret else describe(value)
            self.error(path, f"must be a string, got {got}{hint}")
            return None
        text = self.expand(path, value)
        if text is not None and (bad := CONTROL_RE.search(text)):
            self.error(path, f"contains the control character {escape(bad.group())} (a line break or tab?)")
            return None
        return text

    def header_safe(self, path: str, value: str | None) -> str | None:
        """Credentials go into an HTTP header: refuse control characters (a second line in a secret file)."""
        if value is not None and CONTROL_RE.search(value):
            self.error(path, "contains a control character (a line break?); credentials must be one line")
            return None
        return value

    def expand(self, path: str, text: str) -> str | None:
        ok = True

        def repl(match: re.Match[str]) -> str:
            nonlocal ok
            if match.group(0) == "$$":
                return "$"
            name = match.group(1)
            if not ENV_NAME_RE.fullmatch(name):
                self.error(path, f"'${{{show(name)}}}' is not a valid environment variable reference")
                ok = False
                return ""
            if name not in self.env:
                self.error(path, f"environment variable '{name}' is not set")
                ok = False
                return ""
            return self.env[name]

        result = ENV_RE.sub(repl, text)
        return result if ok else None

    def number(self, path: str, value: Any, *, minimum: float, maximum: float) -> float | None:
        if isinstance(value, str):
            expanded = self.expand(path, value)
            if expanded is None:
                return None
            try:
                value = float(expanded)
            except ValueError:
                self.error(path, f"must be a number of seconds, got {show(repr(expanded))}")
                return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(path, f"must be a number of seconds, got {describe(value)}")
            return None
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not minimum < number <= maximum:
            self.error(path, f"must be greater than {minimum:g} and at most {maximum:g}, got {number:g}")
            return None
        return number

    def count(self, path: str, value: Any, *, maximum: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
            self.error(path, f"must be a whole number from 1 to {maximum}, got {describe(value)}")
            return None
        return value

    def boolean(self, path: str, value: Any) -> bool | None:
        if not isinstance(value, bool):
            self.error(path, f"must be true or false, got {describe(value)}")
            return None
        return value

    def secret_file(self, path: str, value: Any) -> Secret | None:
        filename = self.string(path, value)
        if filename is None:
            return None
        file_path = Path(filename)
        if not file_path.is_absolute():
            file_path = self.base_dir / file_path
        try:
            data = read_bounded(file_path, MAX_SECRET_BYTES)
        except OSError as exc:
            self.error(path, f"cannot read file '{file_path}': {exc.strerror or exc}")
            return None
        if len(data) > MAX_SECRET_BYTES:
            self.error(path, f"file '{file_path}' is larger than {MAX_SECRET_BYTES // 1024} KiB; a secret is one line")
            return None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            self.error(path, f"file '{file_path}' is not UTF-8 text")
            return None
        secret = self.header_safe(path, text.rstrip("\r\n"))
        if secret is None:
            return None
        if not secret:
            self.error(path, f"file '{file_path}' is empty")
            return None
        return Secret(secret)

    def one_secret(self, path: str, obj: Mapping[str, Any], inline: str, from_file: str) -> Secret | None:
        has_inline, has_file = inline in obj, from_file in obj
        if has_inline == has_file:
            self.error(path, f"needs exactly one of '{inline}' or '{from_file}'")
            return None
        if has_file:
            return self.secret_file(join(path, from_file), obj[from_file])
        text = self.header_safe(join(path, inline), self.string(join(path, inline), obj[inline], secret=True))
        if text is None:
            return None
        if not text:
            self.error(join(path, inline), "must not be empty")
            return None
        return Secret(text)


__all__ = ["MAX_SECRET_BYTES", "Reader", "Secret"]
