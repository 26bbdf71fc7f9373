"""``--web.config.file``: TLS and basic auth on the exporter's own port, in the exporter-toolkit format.

Prometheus, Alertmanager and the Go exporters read the same file (``tls_server_config``, ``basic_auth_users`` with
bcrypt hashes), so one file and one habit serve them all. Supported here::

    tls_server_config:
      cert_file: server.crt            # PEM; relative paths are relative to this file
      key_file: server.key             # PEM, not encrypted
      client_auth_type: RequireAndVerifyClientCert   # or VerifyClientCertIfGiven, NoClientCert (default)
      client_ca_file: clients-ca.pem   # needed by the two verifying types
      min_version: TLS12               # TLS10..TLS13 (default TLS12)
      max_version: TLS13
    basic_auth_users:
      prometheus: $2y$10$...           # bcrypt hash, any cost (htpasswd -nBC 10 "" | tr -d ':\\n')

Errors name the file and the key like config errors do, and never show a hash. The file is read at start (and by
``--check-config``) and again on every reload (:class:`exporter.serve.webconfig.LiveWebConfig`: a broken one keeps
the running one). The certificate and key are picked up when they change on disk
(:class:`exporter.serve.webconfig.RenewingTLS`), as exporter-toolkit does: no restart, no connection dropped. The
users are checked by :mod:`exporter.serve.auth`.
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.config.errors import ConfigError, join, show
from exporter.config.reader import Reader, Secret
from exporter.config.yamlfile import load_yaml, read_text_file

log = logging.getLogger("exporter.webconfig")

MAX_WEB_CONFIG_BYTES = 1024 * 1024
BCRYPT_RE = re.compile(r"\$2[abxy]\$(\d\d)\$[./A-Za-z0-9]{53}")
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
CLIENT_AUTH_TYPES = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# exporter-toolkit keys this exporter does not implement: named as such rather than "unknown key".
UNSUPPORTED = {
    "": ["http_server_config", "rate_limit"],
    "tls_server_config": [
        "cert",
        "key",
        "client_ca",
        "client_allowed_sans",
        "cipher_suites",
        "prefer_server_cipher_suites",
        "curve_preferences",
    ],
}
# What BCRYPT_RE takes, in words: htpasswd writes $2y$, Python's bcrypt $2b$; any cost bcrypt knows (10 is usual).
BCRYPT_FORM = "'$2y$' or '$2b$' (or '$2a$', '$2x$'), a two-digit cost 04-31, '$' and 53 characters"
HTPASSWD_HINT = "make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'"


class WebConfigError(ConfigError):
    """All problems found in one web config file."""

    kind = "web config"


@dataclass(frozen=True, slots=True)
class TLSServerConfig:
    cert_file: str
    key_file: str
    client_auth_type: str = "NoClientCert"
    client_ca_file: str | None = None
    min_version: str = "TLS12"
    max_version: str | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """A server context; raises ``ssl.SSLError``/``OSError`` when the files do not load."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = TLS_VERSIONS[self.min_version]
        if self.max_version is not None:
            context.maximum_version = TLS_VERSIONS[self.max_version]
        # A passphrase callback that gives none: an encrypted key fails instead of prompting on the terminal.
        context.load_cert_chain(self.cert_file, self.key_file, password=lambda: b"")
        if self.client_ca_file is not None:
            context.load_verify_locations(cafile=self.client_ca_file)
        context.verify_mode = CLIENT_AUTH_TYPES[self.client_auth_type]
        return context


@dataclass(frozen=True, slots=True)
class WebConfig:
    tls: TLSServerConfig | None = None
    users: tuple[tuple[str, Secret], ...] = ()  # username -> bcrypt hash (a Secret: never in a repr)
    source: str = "<memory>"
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)

    def summary(self) -> str:
        if self.tls is None:
            tls = "no TLS (plain HTTP)"
        else:
            client = "" if self.tls.client_auth_type == "NoClientCert" else f", {self.tls.client_auth_type}"
            tls = f"TLS (min {self.tls.min_version}{client})"
        n = len(self.users)
        auth = f"basic auth for {n} user{'s' if n != 1 else ''}" if n else "no basic auth"
        return f"{self.source}: OK, {tls}, {auth}"


class _WebReader(Reader):
    """The schema's readers, without ``${VAR}`` expansion (exporter-toolkit has none; '$' is in hashes)."""

    def expand(self, path: str, text: str) -> str | None:
        return text

    def known_keys(self, path: str, obj: Mapping[Any, Any], allowed: list[str], required: list[str]) -> None:
        unsupported = UNSUPPORTED.get(path, [])
        for key in unsupported:
            if key in obj:
                self.error(join(path, key), "is an exporter-toolkit setting pulsatrix-exporter does not support")
        self.keys(path, obj, [*allowed, *unsupported], required)

    def web_config(self, raw: Any) -> WebConfig | None:
        if raw is None:  # an empty file: nothing to configure, as in exporter-toolkit
            return WebConfig(source=self.source)
        top = self.mapping("(top level)", raw)
        if top is None:
            return None
        self.known_keys("", top, ["tls_server_config", "basic_auth_users"], [])
        tls = self.tls_server(top["tls_server_config"]) if top.get("tls_server_config") is not None else None
        users = self.users(top["basic_auth_users"]) if top.get("basic_auth_users") is not None else ()
        if self.problems:
            return None
        context = None
        if tls is not None:
            try:
                context = tls.ssl_context()
            except (ssl.SSLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
                self.error("tls_server_config", f"cannot load cert_file and key_file together: {reason}")
                return None
        return WebConfig(tls=tls, users=users, source=self.source, ssl_context=context)

    def file(self, path: str, value: Any, *, marker: str, what: str) -> str | None:
        name = self.string(path, value)
        if name is None:
            return None
        file_path = Path(name) if Path(name).is_absolute() else self.base_dir / name
        try:
            text = read_text_file(file_path, str(file_path), max_bytes=MAX_WEB_CONFIG_BYTES, what=what)
        except ConfigError as exc:
            self.error(path, f"'{file_path}': {exc.problems[0]}")
            return None
        if marker not in text:
            self.error(path, f"'{file_path}' is not a PEM {what} (no '{marker}' line)")
            return None
        if "ENCRYPTED" in text:
            self.error(path, f"'{file_path}' is encrypted with a passphrase, which is not supported")
            return None
        return str(file_path)

    def tls_server(self, raw: Any) -> TLSServerConfig | None:
        path = "tls_server_config"
        obj = self.mapping(path, raw)
        if obj is None:
            return None
        allowed = ["cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version"]
        self.known_keys(path, obj, allowed, ["cert_file", "key_file"])
        before = len(self.problems)
        cert = key = ca = None
        if "cert_file" in obj:
            cert = self.file(f"{path}.cert_file", obj["cert_file"], marker="-----BEGIN CERTIFICATE", what="certificate")
        if "key_file" in obj:
            key = self.file(f"{path}.key_file", obj["key_file"], marker="PRIVATE KEY-----", what="private key")
        if obj.get("client_ca_file") is not None:
            ca = self.file(
                f"{path}.client_ca_file", obj["client_ca_file"], marker="-----BEGIN CERTIFICATE", what="CA certificate"
            )
        has_ca = obj.get("client_ca_file") is not None
        auth_type = self.choice(f"{path}.client_auth_type", obj.get("client_auth_type"), CLIENT_AUTH_TYPES)
        if auth_type not in (None, "NoClientCert") and not has_ca:
            self.error(f"{path}.client_auth_type", f"{auth_type} needs client_ca_file to verify client certificates")
        if has_ca and obj.get("client_auth_type") in (None, "NoClientCert"):
            self.error(
                f"{path}.client_ca_file",
                "is only used with client_auth_type RequireAndVerifyClientCert or VerifyClientCertIfGiven; "
                "without one, client certificates are not checked",
            )
        min_version = self.choice(f"{path}.min_version", obj.get("min_version"), TLS_VERSIONS)
        max_version = self.choice(f"{path}.max_version", obj.get("max_version"), TLS_VERSIONS)
        versions = list(TLS_VERSIONS)
        if min_version and max_version and versions.index(min_version) > versions.index(max_version):
            self.error(f"{path}.max_version", f"{max_version} is below min_version {min_version}")
        if len(self.problems) != before or cert is None or key is None:
            return None
        return TLSServerConfig(
            cert_file=cert,
            key_file=key,
            client_auth_type=auth_type or "NoClientCert",
            client_ca_file=ca,
            min_version=min_version or "TLS12",
            max_version=max_version,
        )

    def choice(self, path: str, value: Any, options: Mapping[str, Any]) -> str | None:
        if value is None:
            return None
        text = self.string(path, value)
        if text is None:
            return None
        if text in ("RequestClientCert", "RequireAnyClientCert"):
            self.error(path, f"{text} does not verify client certificates; use RequireAndVerifyClientCert")
            return None
        if text not in options:
            self.error(path, f"'{show(text)}' is not one of {', '.join(options)}")
            return None
        return text

    def users(self, raw: Any) -> tuple[tuple[str, Secret], ...]:
        path = "basic_auth_users"
        if not isinstance(raw, Mapping):
            self.error(path, "must be a mapping of user names to bcrypt hashes")
            return ()
        users: list[tuple[str, Secret]] = []
        for user, hashed in raw.items():
            user_path = join(path, show(user))
            if not isinstance(user, str) or not user:
                self.error(user_path, "a user name must be a non-empty string")
                continue
            name = self.string(user_path, user)
            if name is None:
                continue
            if ":" in name:
                self.error(user_path, "a user name must not contain ':'")
                continue
            # The value is (meant to be) a hash; whatever it is, it is never shown: it may be a plain password.
            if not isinstance(hashed, str):
                self.error(user_path, f"must be a bcrypt hash in quotes, got {type(hashed).__name__}; {HTPASSWD_HINT}")
                continue
            match = BCRYPT_RE.fullmatch(hashed)
            if match is None:
                self.error(user_path, f"is not a bcrypt hash ({BCRYPT_FORM}); {HTPASSWD_HINT}")
                continue
            if not 4 <= int(match.group(1)) <= 31:
                self.error(user_path, "the bcrypt cost must be 4-31")
                continue
            users.append((name, Secret(hashed)))
        return tuple(users)


def parse_web_config(text: str, *, source: str = "<memory>", base_dir: Path | None = None) -> WebConfig:
    """Parse and validate web config text; raise :class:`WebConfigError` with every problem found."""
    raw = load_yaml(text, source, max_chars=MAX_WEB_CONFIG_BYTES, error=WebConfigError)
    reader = _WebReader(source, {}, base_dir or Path.cwd())
    config = reader.web_config(raw)
    if config is None:
        raise WebConfigError(source, reader.problems)
    return config


def load_web_config(path: str | Path) -> WebConfig:
    """Read and validate a ``--web.config.file``; raise :class:`WebConfigError` naming the file on any problem."""
    file_path = Path(path)
    text = read_text_file(
        file_path, str(path), max_bytes=MAX_WEB_CONFIG_BYTES, what="web config file", error=WebConfigError
    )
    return parse_web_config(text, source=str(path), base_dir=file_path.resolve().parent)


__all__ = [
    "TLSServerConfig",
    "WebConfig",
    "WebConfigError",
    "load_web_config",
    "parse_web_config",
]
