"""The exporter's config: frozen, typed objects, and loading them from the YAML config file.

Loading is in layers: :mod:`exporter.config.yamlfile` reads the file and its YAML (hardened),
:mod:`exporter.config.reader`'s readers convert values and collect problems, and this module holds the schema of the
file (which keys, which values), the cross-checks between values (unique charger names, TLS only with https) and the
entry points. Every problem in a file is collected and reported at once, each one naming the file, the key path
(``chargers[1].url``) and what is wrong. Secrets are wrapped in :class:`Secret` so that they never show up in a
``repr``, a log line or an error message.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from exporter.config.errors import ConfigError, describe, join, show
from exporter.config.reader import Reader, Secret
from exporter.config.yamlfile import load_yaml, read_text_file

DEFAULT_TIMEOUT = 5.0
MAX_TIMEOUT = 300.0
# Serving: a reading younger than min_interval is served again instead of polling (0: poll on every scrape);
# max_concurrency bounds the chargers polled at once (default None: all); idle connections to a charger are
# kept this long.
MAX_MIN_INTERVAL = 3600.0
MAX_CONCURRENCY = 100_000
# Chargers polled at once unless the config says otherwise. A bound saves memory in a scrape of a thousand chargers
# (docs/benchmark/fleet.md with max_concurrency 256, fleet-unbounded.md without): thousands of requests in flight
# at once cost memory and gain nothing once the CPU is busy. Chargers that hang hold their slot until their
# timeout: a fleet where more may hang at once sets more.
DEFAULT_MAX_CONCURRENCY: int | None = None  # all at once: hanging chargers never queue healthy ones (README)
DEFAULT_KEEPALIVE = 300.0
MAX_KEEPALIVE = 3600.0

# A wrong file (a log, /dev/zero, generated garbage) is one clear error instead of an exhausted memory; a real
# config is far inside it: 10,000 chargers with auth and labels take about 2 MiB. (Depth and node limits:
# exporter.config.yamlfile.)
MAX_CONFIG_BYTES = 4 * 1024 * 1024

# Used with fullmatch: "$" would also accept a trailing line break.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# What RFC 3986 allows in a URL, unencoded; anything else (a space, a quote, a non-ASCII letter) is refused.
URL_CHARS_RE = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")
BAD_PERCENT_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
HOST_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_\-]{0,61}[A-Za-z0-9_])?"
HOST_RE = re.compile(rf"{HOST_LABEL}(?:\.{HOST_LABEL})*\.?")

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
    max_concurrency: int | None = DEFAULT_MAX_CONCURRENCY  # chargers polled at once; None: no bound
    keepalive_timeout: float = DEFAULT_KEEPALIVE  # seconds an idle connection to a charger is kept open

    def summary(self) -> str:
        n = len(self.chargers)
        auth = sum(1 for c in self.chargers if c.auth is not None)
        return (
            f"{self.source}: OK, {n} charger{'s' if n != 1 else ''} "
            f"({', '.join(c.name for c in self.chargers[:10])}{', ...' if n > 10 else ''}), "
            f"{auth} with auth, default timeout {self.timeout:g}s"
        )


@dataclass(frozen=True, slots=True)
class ChargerDefaults:
    """What a charger gets for a key it does not set: from the file's ``defaults:`` (and its top-level ``timeout``
    and ``min_interval``), then from its group. Labels merge key by key (the charger's own win); ``auth`` and
    ``tls`` are taken whole; a default ``tls`` applies to https:// chargers only."""

    timeout: float = DEFAULT_TIMEOUT
    min_interval: float = 0.0
    labels: tuple[tuple[str, str], ...] = ()
    auth: BasicAuth | BearerAuth | None = None
    tls: TLSConfig | None = None


DEFAULT_KEYS = ("timeout", "min_interval", "labels", "auth", "tls")
CHARGER_KEYS = ("name", "url", *DEFAULT_KEYS)
TOP_KEYS = ("timeout", "chargers", "min_interval", "max_concurrency", "keepalive_timeout", "defaults", "groups")


def merge_labels(base: tuple[tuple[str, str], ...], own: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({**dict(base), **dict(own)}.items()))


class _ConfigReader(Reader):
    """The config file's schema, section by section, on the shared readers."""

    def interval(self, path: str, value: Any) -> float | None:
        """Seconds, where 0 means "off" (min_interval)."""
        if isinstance(value, int | float) and not isinstance(value, bool) and value == 0:
            return 0.0
        return self.number(path, value, minimum=0, maximum=MAX_MIN_INTERVAL)

    # -- sections ----------------------------------------------------------------------------------------

    def config(self, raw: Any) -> Config | None:
        if raw is None:
            self.error("", "the file is empty; it needs at least a 'chargers' list")
            return None
        top = self.mapping("(top level)", raw)
        if top is None:
            return None
        self.keys("", top, TOP_KEYS, [] if "groups" in top else ["chargers"])
        timeout = DEFAULT_TIMEOUT
        if "timeout" in top:
            timeout = self.number("timeout", top["timeout"], minimum=0, maximum=MAX_TIMEOUT) or DEFAULT_TIMEOUT
        min_interval = self.interval("min_interval", top["min_interval"]) if "min_interval" in top else 0.0
        max_concurrency: int | None = DEFAULT_MAX_CONCURRENCY
        if "max_concurrency" in top:
            max_concurrency = self.count("max_concurrency", top["max_concurrency"], maximum=MAX_CONCURRENCY)
        keepalive = DEFAULT_KEEPALIVE
        if "keepalive_timeout" in top:
            keepalive = (
                self.number("keepalive_timeout", top["keepalive_timeout"], minimum=0, maximum=MAX_KEEPALIVE)
                or DEFAULT_KEEPALIVE
            )
        defaults = ChargerDefaults(timeout=timeout, min_interval=min_interval or 0.0)
        if "defaults" in top:
            for key in ("timeout", "min_interval"):
                if key in top and isinstance(top["defaults"], Mapping) and key in top["defaults"]:
                    self.error(f"defaults.{key}", f"is also set at the top level ('{key}'); set it in one place")
            defaults = self.defaults("defaults", top["defaults"], defaults)
        timeout, min_interval = defaults.timeout, defaults.min_interval
        chargers = self.all_chargers(top, defaults)
        if self.problems:
            return None
        return Config(
            chargers=chargers,
            timeout=timeout,
            source=self.source,
            min_interval=min_interval or 0.0,
            max_concurrency=max_concurrency,
            keepalive_timeout=keepalive,
        )

    def defaults(self, path: str, value: Any, base: ChargerDefaults) -> ChargerDefaults:
        """A ``defaults:`` block (or a group's own keys) read over ``base``."""
        obj = self.mapping(path, value)
        if obj is None:
            return base
        return self.defaults_from(path, obj, base, DEFAULT_KEYS)

    def defaults_from(
        self, path: str, obj: Mapping[str, Any], base: ChargerDefaults, allowed: Sequence[str]
    ) -> ChargerDefaults:
        if allowed == DEFAULT_KEYS:
            self.keys(path, obj, allowed, [])
        timeout = base.timeout
        if "timeout" in obj:
            timeout = self.number(join(path, "timeout"), obj["timeout"], minimum=0, maximum=MAX_TIMEOUT) or timeout
        min_interval = base.min_interval
        if "min_interval" in obj:
            min_interval = self.interval(join(path, "min_interval"), obj["min_interval"]) or 0.0
        labels = base.labels
        if "labels" in obj:
            labels = merge_labels(base.labels, self.labels(join(path, "labels"), obj["labels"]))
        auth = self.auth(join(path, "auth"), obj["auth"]) if "auth" in obj else base.auth
        tls = self.tls(join(path, "tls"), obj["tls"]) if "tls" in obj else base.tls
        return ChargerDefaults(timeout, min_interval, labels, auth, tls)

    def all_chargers(self, top: Mapping[str, Any], defaults: ChargerDefaults) -> tuple[ChargerConfig, ...]:
        """The top-level charger list and every group's, each charger read with its defaults; names unique across
        all of them; at least one charger in the file."""
        seen: dict[str, str] = {}
        chargers: list[ChargerConfig] = []
        if "chargers" in top:
            chargers += self.chargers("chargers", top["chargers"], defaults, seen, empty_ok="groups" in top)
        if "groups" in top:
            groups = top["groups"]
            if not isinstance(groups, list):
                self.error("groups", f"must be a list of groups (each with 'chargers'), got {describe(groups)}")
                return tuple(chargers)
            if not groups:
                self.error("groups", "must list at least one group")
            for i, group in enumerate(groups):
                path = f"groups[{i}]"
                obj = self.mapping(path, group)
                if obj is None:
                    continue
                self.keys(path, obj, ["chargers", *DEFAULT_KEYS], ["chargers"])
                group_defaults = self.defaults_from(path, obj, defaults, ["chargers", *DEFAULT_KEYS])
                if "chargers" in obj:
                    chargers += self.chargers(f"{path}.chargers", obj["chargers"], group_defaults, seen)
            if not chargers and not self.problems:
                self.error("groups", "the groups list no charger; the file needs at least one")
        return tuple(chargers)

    def chargers(
        self,
        where: str,
        raw_chargers: Any,
        defaults: ChargerDefaults,
        seen: dict[str, str],
        *,
        empty_ok: bool = False,
    ) -> list[ChargerConfig]:
        """One charger list, each charger read with ``defaults``; ``seen`` maps names to where they were first
        used, across lists."""
        chargers: list[ChargerConfig] = []
        if not isinstance(raw_chargers, list):
            self.error(where, f"must be a list of chargers, got {describe(raw_chargers)}")
        elif not raw_chargers:
            if not empty_ok:
                self.error(where, "must list at least one charger")
        else:
            for i, item in enumerate(raw_chargers):
                path = f"{where}[{i}]"
                before = len(self.problems)
                charger = self.charger(path, item, defaults)
                # The name after ${VAR} expansion; for a charger with other errors, its literal name.
                raw_name = item.get("name") if isinstance(item, Mapping) else None
                name = charger.name if charger is not None else raw_name
                duplicate = False
                if isinstance(name, str) and (charger is not None or "$" not in name):
                    if name in seen:
                        self.error(f"{path}.name", f"duplicate charger name '{name}' (also used by {seen[name]})")
                        duplicate = True
                    else:
                        seen[name] = path
                if len(self.problems) != before:
                    self.name_charger(path, charger.name if charger is not None else self.quiet_name(item), before)
                if charger is not None and not duplicate:
                    chargers.append(charger)
        return chargers

    def name_charger(self, path: str, name: str | None, since: int) -> None:
        """Problems inside a charger name it, as an operator searches a long file: ``chargers[5] (bay-12): url: …``
        (the index alone when the charger has no valid name)."""
        if name is None:
            return
        prefix = f"{path}."
        for n in range(since, len(self.problems)):
            problem = self.problems[n]
            if problem.startswith(prefix):
                self.problems[n] = f"{path} ({name}): {problem[len(prefix) :]}"

    def quiet_name(self, item: Any) -> str | None:
        """The charger's name if it is a valid one (after ``${VAR}`` expansion); its problems are already reported."""
        if not isinstance(item, Mapping) or "name" not in item:
            return None
        name = Reader(self.source, self.env, self.base_dir).string("name", item["name"])
        return name if name is not None and NAME_RE.fullmatch(name) else None

    def charger(self, path: str, raw: Any, defaults: ChargerDefaults) -> ChargerConfig | None:
        obj = self.mapping(path, raw)
        if obj is None:
            return None
        before = len(self.problems)
        self.keys(path, obj, CHARGER_KEYS, ["name", "url"])
        name = self.string(f"{path}.name", obj["name"]) if "name" in obj else None
        if name is not None and not NAME_RE.fullmatch(name):
            self.error(
                f"{path}.name",
                f"'{show(name)}' is not a valid charger name (1-64 characters: letters, digits, '_', '.', '-'; "
                "starting with a letter or digit)",
            )
            name = None
        url = self.url(f"{path}.url", obj["url"]) if "url" in obj else None
        timeout = defaults.timeout
        if "timeout" in obj:
            timeout = self.number(f"{path}.timeout", obj["timeout"], minimum=0, maximum=MAX_TIMEOUT) or timeout
        min_interval = defaults.min_interval
        if "min_interval" in obj:
            min_interval = self.interval(f"{path}.min_interval", obj["min_interval"]) or 0.0
        labels = defaults.labels
        if "labels" in obj:
            labels = merge_labels(defaults.labels, self.labels(f"{path}.labels", obj["labels"]))
        auth = self.auth(f"{path}.auth", obj["auth"]) if "auth" in obj else defaults.auth
        tls = self.tls(f"{path}.tls", obj["tls"]) if "tls" in obj else None
        if tls is not None and url is not None and not url.startswith("https:"):
            self.error(f"{path}.tls", "is only used with an https:// URL")
        if tls is None and url is not None and url.startswith("https:"):
            tls = defaults.tls  # a default tls is for the https:// chargers among those it covers
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
            self.error(path, f"is not a valid URL: '{show(parts.hostname)}' is not a host name or IP address")
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
            key_path = join(path, show(key))
            if not isinstance(key, str) or not LABEL_NAME_RE.fullmatch(key) or key.startswith("__"):
                self.error(key_path, f"'{show(key)}' is not a valid Prometheus label name")
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


def parse_config(
    text: str, *, source: str = "<memory>", env: Mapping[str, str] | None = None, base_dir: Path | None = None
) -> Config:
    """Parse and validate config text; raise :class:`ConfigError` with every problem found (and nothing else)."""
    raw = load_yaml(text, source, max_chars=MAX_CONFIG_BYTES)
    reader = _ConfigReader(source, os.environ if env is None else env, base_dir or Path.cwd())
    config = reader.config(raw)
    if config is None:
        raise ConfigError(source, reader.problems)
    return config


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file; raise :class:`ConfigError` naming the file on any problem."""
    file_path = Path(path)
    text = read_text_file(file_path, str(path), max_bytes=MAX_CONFIG_BYTES, what="config file")
    return parse_config(text, source=str(path), env=env, base_dir=file_path.resolve().parent)


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
    "DEFAULT_KEEPALIVE",
    "DEFAULT_TIMEOUT",
    "MAX_CONFIG_BYTES",
    "BasicAuth",
    "BearerAuth",
    "ChargerConfig",
    "ChargerDefaults",
    "Config",
    "ConfigError",
    "Secret",
    "TLSConfig",
    "demo_config",
    "load_config",
    "parse_config",
]
