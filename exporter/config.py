"""Load the YAML config file into frozen, typed objects.

Every problem in a file is collected and reported at once, each one naming the file, the key path
(``chargers[1].url``) and what is wrong. Secrets are wrapped in :class:`Secret` so that they never show up in a
``repr``, a log line or an error message.
"""

from __future__ import annotations

import difflib
import errno
import math
import os
import re
import ssl
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

DEFAULT_TIMEOUT = 5.0
MAX_TIMEOUT = 300.0
# Serving: a reading younger than min_interval is served again instead of polling (0: poll on every scrape);
# max_concurrency bounds the chargers polled at once (None: all); idle connections to a charger are kept this long.
MAX_MIN_INTERVAL = 3600.0
MAX_CONCURRENCY = 100_000
DEFAULT_KEEPALIVE = 300.0
MAX_KEEPALIVE = 3600.0

# Limits that turn a wrong file (a log, /dev/zero, an alias bomb, generated garbage) into one clear error instead of
# a hang, a traceback or an exhausted memory. A real config is far inside them: 10,000 chargers with auth and labels
# take about 2 MiB, 5 levels of nesting and 150,000 YAML nodes.
MAX_CONFIG_BYTES = 4 * 1024 * 1024
MAX_SECRET_BYTES = 64 * 1024
MAX_DEPTH = 32
MAX_NODES = 1_000_000
MAX_PROBLEMS_SHOWN = 100

# Used with fullmatch: "$" would also accept a trailing line break.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# What RFC 3986 allows in a URL, unencoded; anything else (a space, a quote, a non-ASCII letter) is refused.
URL_CHARS_RE = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")
BAD_PERCENT_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
HOST_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_\-]{0,61}[A-Za-z0-9_])?"
HOST_RE = re.compile(rf"{HOST_LABEL}(?:\.{HOST_LABEL})*\.?")
# Characters that would break a one-line message or a header: C0/C1 controls, DEL, the Unicode line separators.
CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
ENV_RE = re.compile(r"\$\$|\$\{([^}]*)\}")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A line that holds a credential inline: a YAML error there must not quote the line (PyYAML quotes an undefined
# alias, an unknown tag or an unreadable value, e.g. a password that starts with '*' or '!').
SECRET_LINE_RE = re.compile(r"(?:^|[\s{,])[\"']?(password|token)[\"']?\s*:")

# Label names the exporter itself puts on device metrics; a configured extra label may not shadow them.
RESERVED_LABELS = frozenset(
    {
        "charger",
        "phase",
        "endpoint",
        "reason",
        "field",
        "state",
        "status",
        "power_domain",
        "controller_name",
        "start_reason",
        "stop_reason",
        "allocation_source",
        "used_phases",
        "version",
        "job",
        "instance",
        "simulated",  # only --demo sets it: a configured charger cannot pass for a simulated one, nor the reverse
    }
)


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


@dataclass(frozen=True, slots=True)
class BasicAuth:
    username: str
    password: Secret


@dataclass(frozen=True, slots=True)
class BearerAuth:
    token: Secret


@dataclass(frozen=True, slots=True)
class TLSConfig:
    ca_file: str | None = None
    insecure_skip_verify: bool = False


@dataclass(frozen=True, slots=True)
class ChargerConfig:
    name: str
    url: str
    timeout: float = DEFAULT_TIMEOUT
    labels: tuple[tuple[str, str], ...] = ()
    auth: BasicAuth | BearerAuth | None = None
    tls: TLSConfig | None = None
    min_interval: float = 0.0  # seconds; 0: poll on every scrape


@dataclass(frozen=True, slots=True)
class Config:
    chargers: tuple[ChargerConfig, ...]
    timeout: float = DEFAULT_TIMEOUT
    source: str = "<memory>"
    min_interval: float = 0.0  # the chargers' default
    max_concurrency: int | None = None  # chargers polled at once; None: no bound
    keepalive_timeout: float = DEFAULT_KEEPALIVE  # seconds an idle connection to a charger is kept open

    def summary(self) -> str:
        n = len(self.chargers)
        auth = sum(1 for c in self.chargers if c.auth is not None)
        return (
            f"{self.source}: OK, {n} charger{'s' if n != 1 else ''} "
            f"({', '.join(c.name for c in self.chargers[:10])}{', ...' if n > 10 else ''}), "
            f"{auth} with auth, default timeout {self.timeout:g}s"
        )


class ConfigError(Exception):
    """All problems found in one config file."""

    kind = "config"  # the word in the first line of the message: "<file>: 2 problems in config"

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        # Every problem is one line whatever the file held: control characters are escaped, long values cut.
        self.source = _escape(source)
        self.problems = [_escape(p) if len(p) <= 500 else _escape(p[:500]) + "…" for p in problems]
        super().__init__(self.render())

    def render(self) -> str:
        n = len(self.problems)
        head = f"{self.source}: {n} problem{'s' if n != 1 else ''} in {self.kind}"
        lines = [head, *(f"  {self.source}: {p}" for p in self.problems[:MAX_PROBLEMS_SHOWN])]
        if n > MAX_PROBLEMS_SHOWN:
            lines.append(f"  {self.source}: ... and {n - MAX_PROBLEMS_SHOWN} more problems")
        return "\n".join(lines)


class _Checker:
    """Walks the raw YAML tree, converting values and collecting every problem with its key path."""

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
                self.error(_join(path, _show(key)), f"a key must be a string, got {_describe(key)}")
            elif key not in allowed:
                hint = difflib.get_close_matches(key[:100], allowed, n=1)
                extra = f" (did you mean '{hint[0]}'?)" if hint else f" (allowed: {', '.join(allowed)})"
                self.error(_join(path, _show(key)), f"unknown key{extra}")
        for key in required:
            if key not in obj:
                self.error(_join(path, key), "required key is missing")

    def mapping(self, path: str, value: Any) -> Mapping[str, Any] | None:
        if not isinstance(value, Mapping):
            self.error(path, f"must be a mapping, got {_describe(value)}")
            return None
        return value

    def string(self, path: str, value: Any, *, secret: bool = False) -> str | None:
        if not isinstance(value, str):
            # YAML turns unquoted 0755 into 493 and 1_000 into 1000: never guess, ask for quotes.
            hint = "; put the value in quotes" if isinstance(value, bool | int | float) else ""
            # A credential's value is never shown, not even a wrongly typed one: only what kind of value it is.
            got = _kind(value) if secret else _describe(value)
            self.error(path, f"must be a string, got {got}{hint}")
            return None
        text = self.expand(path, value)
        if text is not None and (bad := CONTROL_RE.search(text)):
            self.error(path, f"contains the control character {_escape(bad.group())} (a line break or tab?)")
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
                self.error(path, f"'${{{_show(name)}}}' is not a valid environment variable reference")
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
                self.error(path, f"must be a number of seconds, got {_show(repr(expanded))}")
                return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(path, f"must be a number of seconds, got {_describe(value)}")
            return None
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not minimum < number <= maximum:
            self.error(path, f"must be greater than {minimum:g} and at most {maximum:g}, got {number:g}")
            return None
        return number

    def interval(self, path: str, value: Any) -> float | None:
        """Seconds, where 0 means "off" (min_interval)."""
        if isinstance(value, int | float) and not isinstance(value, bool) and value == 0:
            return 0.0
        return self.number(path, value, minimum=0, maximum=MAX_MIN_INTERVAL)

    def count(self, path: str, value: Any, *, maximum: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
            self.error(path, f"must be a whole number from 1 to {maximum}, got {_describe(value)}")
            return None
        return value

    def boolean(self, path: str, value: Any) -> bool | None:
        if not isinstance(value, bool):
            self.error(path, f"must be true or false, got {_describe(value)}")
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
            return self.secret_file(_join(path, from_file), obj[from_file])
        text = self.header_safe(_join(path, inline), self.string(_join(path, inline), obj[inline], secret=True))
        if text is None:
            return None
        if not text:
            self.error(_join(path, inline), "must not be empty")
            return None
        return Secret(text)

    # -- sections ----------------------------------------------------------------------------------------

    def config(self, raw: Any) -> Config | None:
        if raw is None:
            self.error("", "the file is empty; it needs at least a 'chargers' list")
            return None
        top = self.mapping("(top level)", raw)
        if top is None:
            return None
        self.keys(
            "", top, ["timeout", "chargers", "min_interval", "max_concurrency", "keepalive_timeout"], ["chargers"]
        )
        timeout = DEFAULT_TIMEOUT
        if "timeout" in top:
            timeout = self.number("timeout", top["timeout"], minimum=0, maximum=MAX_TIMEOUT) or DEFAULT_TIMEOUT
        min_interval = self.interval("min_interval", top["min_interval"]) if "min_interval" in top else 0.0
        max_concurrency = None
        if "max_concurrency" in top:
            max_concurrency = self.count("max_concurrency", top["max_concurrency"], maximum=MAX_CONCURRENCY)
        keepalive = DEFAULT_KEEPALIVE
        if "keepalive_timeout" in top:
            keepalive = (
                self.number("keepalive_timeout", top["keepalive_timeout"], minimum=0, maximum=MAX_KEEPALIVE)
                or DEFAULT_KEEPALIVE
            )
        chargers: list[ChargerConfig] = []
        raw_chargers = top.get("chargers")
        if "chargers" in top:
            if not isinstance(raw_chargers, list):
                self.error("chargers", f"must be a list of chargers, got {_describe(raw_chargers)}")
            elif not raw_chargers:
                self.error("chargers", "must list at least one charger")
            else:
                seen: dict[str, int] = {}
                for i, item in enumerate(raw_chargers):
                    path = f"chargers[{i}]"
                    charger = self.charger(path, item, timeout, min_interval or 0.0)
                    # The name after ${VAR} expansion; for a charger with other errors, its literal name.
                    raw_name = item.get("name") if isinstance(item, Mapping) else None
                    name = charger.name if charger is not None else raw_name
                    if isinstance(name, str) and (charger is not None or "$" not in name):
                        if name in seen:
                            self.error(
                                f"{path}.name",
                                f"duplicate charger name '{name}' (also used by chargers[{seen[name]}])",
                            )
                            continue
                        seen[name] = i
                    if charger is not None:
                        chargers.append(charger)
        if self.problems:
            return None
        return Config(
            chargers=tuple(chargers),
            timeout=timeout,
            source=self.source,
            min_interval=min_interval or 0.0,
            max_concurrency=max_concurrency,
            keepalive_timeout=keepalive,
        )

    def charger(
        self, path: str, raw: Any, default_timeout: float, default_min_interval: float = 0.0
    ) -> ChargerConfig | None:
        obj = self.mapping(path, raw)
        if obj is None:
            return None
        before = len(self.problems)
        self.keys(path, obj, ["name", "url", "timeout", "labels", "auth", "tls", "min_interval"], ["name", "url"])
        name = self.string(f"{path}.name", obj["name"]) if "name" in obj else None
        if name is not None and not NAME_RE.fullmatch(name):
            self.error(
                f"{path}.name",
                f"'{_show(name)}' is not a valid charger name (1-64 characters: letters, digits, '_', '.', '-'; "
                "starting with a letter or digit)",
            )
            name = None
        url = self.url(f"{path}.url", obj["url"]) if "url" in obj else None
        timeout = default_timeout
        if "timeout" in obj:
            timeout = self.number(f"{path}.timeout", obj["timeout"], minimum=0, maximum=MAX_TIMEOUT) or timeout
        min_interval = default_min_interval
        if "min_interval" in obj:
            min_interval = self.interval(f"{path}.min_interval", obj["min_interval"]) or 0.0
        labels = self.labels(f"{path}.labels", obj["labels"]) if "labels" in obj else ()
        auth = self.auth(f"{path}.auth", obj["auth"]) if "auth" in obj else None
        tls = self.tls(f"{path}.tls", obj["tls"]) if "tls" in obj else None
        if tls is not None and url is not None and not url.startswith("https:"):
            self.error(f"{path}.tls", "is only used with an https:// URL")
        if len(self.problems) != before or name is None or url is None:
            return None
        return ChargerConfig(
            name=name, url=url, timeout=timeout, labels=labels, auth=auth, tls=tls, min_interval=min_interval
        )

    def url(self, path: str, value: Any) -> str | None:
        text = self.string(path, value)
        if text is None:
            return None
        if not URL_CHARS_RE.fullmatch(text):
            bad = next(c for c in text if not URL_CHARS_RE.fullmatch(c))
            self.error(path, f"is not a valid URL: {bad!r} is not allowed in a URL; percent-encode it")
            return None
        if BAD_PERCENT_RE.search(text):
            self.error(path, "is not a valid URL: '%' must be followed by two hex digits")
            return None
        try:
            parts = urlsplit(text)
            port = parts.port  # raises ValueError for a bad port
        except ValueError as exc:
            self.error(path, f"is not a valid URL: {exc}")
            return None
        if parts.scheme not in ("http", "https"):
            shown = f"'{parts.scheme}'" if parts.scheme else "none"
            self.error(path, f"URL scheme must be http or https, got {shown}")
            return None
        if not parts.hostname:
            self.error(path, "URL has no host")
            return None
        if port == 0:
            self.error(path, "is not a valid URL: port 0")
            return None
        if not parts.netloc.rpartition("@")[2].startswith("[") and not HOST_RE.fullmatch(parts.hostname):
            self.error(path, f"is not a valid URL: '{_show(parts.hostname)}' is not a host name or IP address")
            return None
        if parts.username is not None or parts.password is not None:
            self.error(path, "credentials in the URL are not allowed; use 'auth.basic' (with 'password_file')")
            return None
        if parts.query or parts.fragment:
            self.error(path, "URL must not have a query string or fragment")
            return None
        return text.rstrip("/")

    def labels(self, path: str, value: Any) -> tuple[tuple[str, str], ...]:
        obj = self.mapping(path, value)
        if obj is None:
            return ()
        result: list[tuple[str, str]] = []
        for key, raw in obj.items():
            key_path = _join(path, _show(key))
            if not isinstance(key, str) or not LABEL_NAME_RE.fullmatch(key) or key.startswith("__"):
                self.error(key_path, f"'{_show(key)}' is not a valid Prometheus label name")
                continue
            if key in RESERVED_LABELS:
                self.error(key_path, f"'{key}' is used by the exporter itself; choose another label name")
                continue
            text = self.string(key_path, raw)
            if text is not None:
                result.append((key, text))
        return tuple(sorted(result))

    def auth(self, path: str, value: Any) -> BasicAuth | BearerAuth | None:
        obj = self.mapping(path, value)
        if obj is None:
            return None
        self.keys(path, obj, ["basic", "bearer"], [])
        kinds = [k for k in ("basic", "bearer") if k in obj]
        if len(kinds) != 1:
            if not any(k not in ("basic", "bearer") for k in obj):
                self.error(path, "needs exactly one of 'basic' or 'bearer'")
            return None
        if kinds[0] == "basic":
            basic = self.mapping(f"{path}.basic", obj["basic"])
            if basic is None:
                return None
            self.keys(f"{path}.basic", basic, ["username", "password", "password_file"], ["username"])
            username = (
                self.header_safe(f"{path}.basic.username", self.string(f"{path}.basic.username", basic["username"]))
                if "username" in basic
                else None
            )
            if username is not None and ":" in username:
                self.error(f"{path}.basic.username", "must not contain ':'")
                username = None
            password = self.one_secret(f"{path}.basic", basic, "password", "password_file")
            if username is None or password is None:
                return None
            return BasicAuth(username=username, password=password)
        bearer = self.mapping(f"{path}.bearer", obj["bearer"])
        if bearer is None:
            return None
        self.keys(f"{path}.bearer", bearer, ["token", "token_file"], [])
        token = self.one_secret(f"{path}.bearer", bearer, "token", "token_file")
        return BearerAuth(token=token) if token is not None else None

    def tls(self, path: str, value: Any) -> TLSConfig | None:
        obj = self.mapping(path, value)
        if obj is None:
            return None
        self.keys(path, obj, ["ca_file", "insecure_skip_verify"], [])
        ca_file = None
        if "ca_file" in obj:
            ca_file = self.string(f"{path}.ca_file", obj["ca_file"])
            if ca_file is not None:
                ca_path = Path(ca_file) if Path(ca_file).is_absolute() else self.base_dir / ca_file
                if not os.access(ca_path, os.R_OK) or not ca_path.is_file():
                    self.error(f"{path}.ca_file", f"cannot read file '{ca_path}'")
                    ca_file = None
                else:
                    try:
                        ssl.create_default_context(cafile=str(ca_path))
                    except (ssl.SSLError, ValueError) as exc:
                        self.error(f"{path}.ca_file", f"'{ca_path}' is not a PEM certificate bundle ({exc})")
                        ca_file = None
                    else:
                        ca_file = str(ca_path)
        insecure = False
        if "insecure_skip_verify" in obj:
            insecure = bool(self.boolean(f"{path}.insecure_skip_verify", obj["insecure_skip_verify"]))
        if insecure and ca_file is not None:
            self.error(path, "'ca_file' and 'insecure_skip_verify: true' contradict each other; choose one")
        return TLSConfig(ca_file=ca_file, insecure_skip_verify=insecure)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"a string ({_escape(repr(value))})" if len(value) < 40 else "a string"
    if isinstance(value, set | tuple | bytes):
        return f"a YAML {type(value).__name__}"
    return f"{type(value).__name__} ({_show(value)})"


def _kind(value: Any) -> str:
    """What kind of value this is, without showing it (for credentials)."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a mapping" if isinstance(value, Mapping) else "a list" if isinstance(value, list) else "another type"


def _escape(text: str) -> str:
    """Control characters as escapes (``\\n``), so that a message stays on one line."""
    return CONTROL_RE.sub(lambda m: repr(m.group())[1:-1], text)


def _show(value: object, limit: int = 60) -> str:
    """A key or value from the file, fit for a one-line message: escaped and at most ``limit`` characters."""
    if value is None or isinstance(value, bool):
        return str(value).lower().replace("none", "null")
    text = _escape(value if isinstance(value, str) else repr(value))
    return text if len(text) <= limit else text[:limit] + "…"


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last one, reports a value it cannot
    convert (``2001-13-45``, ``!!int abc``) as a YAML error at its position instead of a bare exception, and stops
    composing at MAX_DEPTH levels (the composer recurses: thousands of levels were a RecursionError) or MAX_NODES
    nodes with aliases expanded (an alias bomb would expand into memory further on)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._deepest = 0
        self._nodes = 0
        self._anchor_shapes: dict[str, tuple[int, int]] = {}  # anchor -> (nodes, levels) it stands for

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            nodes, levels = self._anchor_shapes.get(event.anchor or "", (1, 0))
            self._grow(nodes, self._depth + levels, event.start_mark)
            return super().compose_node(parent, index)
        outer_deepest, start = self._deepest, self._nodes
        self._depth += 1
        self._grow(1, self._depth, event.start_mark)
        self._deepest = self._depth
        node = super().compose_node(parent, index)
        if event.anchor:
            self._anchor_shapes[event.anchor] = (self._nodes - start, self._deepest - self._depth + 1)
        self._depth -= 1
        self._deepest = max(outer_deepest, self._deepest)
        return node

    def _grow(self, nodes: int, depth: int, mark: Any) -> None:
        self._nodes += nodes
        self._deepest = max(self._deepest, depth)
        if depth > MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
        if self._nodes > MAX_NODES:
            problem = f"more than {MAX_NODES:,} values with aliases expanded (alias bomb?)"
            raise yaml.composer.ComposerError(None, None, problem, mark)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except Exception as exc:  # PyYAML lets ValueError, KeyError, AttributeError... escape from its constructors
            kind = node.tag.rpartition(":")[2]
            problem = f"cannot read {_show(node.value)} as a {kind} (quote it if it is text)"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from exc


MERGE_TAG = "tag:yaml.org,2002:merge"


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == MERGE_TAG:  # '<<: *defaults': construct_mapping merges it; explicit keys win
            continue
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:  # a list or mapping used as a key
            raise yaml.constructor.ConstructorError(
                None, None, f"a key must be a string, got {_describe(key)}", key_node.start_mark
            ) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key '{_show(key)}'", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_config(
    text: str, *, source: str = "<memory>", env: Mapping[str, str] | None = None, base_dir: Path | None = None
) -> Config:
    """Parse and validate config text; raise :class:`ConfigError` with every problem found (and nothing else)."""
    raw = load_yaml(text, source, max_chars=MAX_CONFIG_BYTES)
    checker = _Checker(source, os.environ if env is None else env, base_dir or Path.cwd())
    config = checker.config(raw)
    if config is None:
        raise ConfigError(source, checker.problems)
    return config


def load_yaml(text: str, source: str, *, max_chars: int, error: type[ConfigError] | None = None) -> Any:
    """The YAML document in ``text`` as plain Python data; any problem is a one-line ``error`` naming ``source``."""
    error_type = error or ConfigError
    if len(text) > max_chars:
        raise error_type(source, [f"larger than the limit of {max_chars // (1024 * 1024)} MiB"])
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None)
        if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow anywhere, e.g. NUL
            line = text.count("\n", 0, exc.position) + 1
            column = exc.position - text.rfind("\n", 0, exc.position)
            char = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
            problem = f"the character {char} is not allowed in YAML (binary data?)"
            raise error_type(source, [f"line {line}, column {column}: invalid YAML: {problem}"]) from None
        if (secret_key := _secret_key_at(text, mark)) is not None:
            problem = f"the value of '{secret_key}' is not valid YAML as written (not shown); put it in single quotes"
        raise error_type(source, [f"{_where(mark)}invalid YAML: {problem or exc}"]) from None
    except RecursionError:  # _check_shape should make this impossible; never a traceback all the same
        raise error_type(source, [f"invalid YAML: nested more than {MAX_DEPTH} levels deep"]) from None


def _secret_key_at(text: str, mark: Any) -> str | None:
    """The credential key ('password', 'token') on the line a YAML error points at, if there is one."""
    if mark is None:
        return None
    lines = text.splitlines()
    line = lines[mark.line] if 0 <= mark.line < len(lines) else ""
    found = SECRET_LINE_RE.search(line)
    return found.group(1) if found else None


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file; raise :class:`ConfigError` naming the file on any problem."""
    file_path = Path(path)
    text = read_text_file(file_path, str(path), max_bytes=MAX_CONFIG_BYTES, what="config file")
    return parse_config(text, source=str(path), env=env, base_dir=file_path.resolve().parent)


def read_bounded(file_path: Path, max_bytes: int) -> bytes:
    """At most ``max_bytes + 1`` bytes of a file. Opened without blocking and refused if it is a named pipe: a FIFO
    with no writer would otherwise hang the start-up, or a reload while it holds the reload lock."""
    fd = os.open(file_path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if stat.S_ISFIFO(os.fstat(f.fileno()).st_mode):
            raise OSError(errno.EINVAL, "is a named pipe, not a file")
        return f.read(max_bytes + 1)


def read_text_file(
    file_path: Path, source: str, *, max_bytes: int, what: str, error: type[ConfigError] | None = None
) -> str:
    """A UTF-8 text file of at most ``max_bytes``; a directory, a device, binary data... is an ``error``."""
    error_type = error or ConfigError
    if file_path.is_dir():
        raise error_type(source, [f"is a directory, not a {what}"])
    try:
        data = read_bounded(file_path, max_bytes)
    except OSError as exc:
        raise error_type(source, [f"cannot read {what}: {exc.strerror or exc}"]) from None
    if len(data) > max_bytes:
        raise error_type(source, [f"{what} is larger than the limit of {max_bytes // (1024 * 1024)} MiB"])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error_type(source, [f"{what} is not UTF-8 text (byte {exc.start} is {data[exc.start]:#04x})"]) from None


def demo_config(base_url: str, names: Sequence[str], labels: Mapping[str, Mapping[str, str]] | None = None) -> Config:
    """The in-memory config ``--demo`` uses for its simulated chargers."""
    labels = labels or {}
    return Config(
        chargers=tuple(
            ChargerConfig(
                name=name,
                url=f"{base_url.rstrip('/')}/{name}",
                timeout=DEFAULT_TIMEOUT,
                labels=tuple(sorted(labels.get(name, {}).items())),
            )
            for name in names
        ),
        source="<demo>",
    )


__all__ = [
    "DEFAULT_TIMEOUT",
    "BasicAuth",
    "BearerAuth",
    "ChargerConfig",
    "Config",
    "ConfigError",
    "Secret",
    "TLSConfig",
    "demo_config",
    "load_config",
    "parse_config",
]
