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
``--check-config``) and again on every reload (:class:`LiveWebConfig`: a broken one keeps the running one). The
certificate and key are picked up when they change on disk (:class:`RenewingTLS`), as exporter-toolkit does: no
restart, no connection dropped. The users are checked by :mod:`exporter.webauth`.
"""

from __future__ import annotations

import logging
import os
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from exporter.problems import ConfigError, join, show
from exporter.schema import Reader, Secret
from exporter.yamlfile import load_yaml, read_text_file

log = logging.getLogger("exporter.webconfig")

MAX_WEB_CONFIG_BYTES = 1024 * 1024
# How often a handshake may look at the certificate and key files: two stat() calls, at most once a second, so a
# renewal is served within a second of the files' replacement and a flood of handshakes costs no disk reads.
CERT_CHECK_INTERVAL = 1.0
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


Stamp = tuple[tuple[int, int, int], ...] | None  # (mtime_ns, size, inode) of cert and key; None: unreadable


class RenewingTLS:
    """The server's ``SSLContext``, whose certificate and key follow their files.

    The context given to the listening socket keeps an ``sni_callback``, which OpenSSL runs for every ClientHello
    (with or without a server name): at most once every ``CERT_CHECK_INTERVAL`` it stats the two files, and when
    their (mtime, size, inode) changed it loads them into a fresh context; each new handshake then continues on the
    newest good context (``SSLObject.context``). Connections already open keep theirs, so nothing in flight drops. A
    pair that does not load (a key that does not match, a file half-written) keeps the previous context and is
    logged once until the files change again.
    """

    def __init__(
        self, tls: TLSServerConfig, context: ssl.SSLContext, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.tls = tls
        self.context = context  # the one the socket serves with; never replaced itself
        self.current = context  # the newest context that loaded
        self._clock = clock
        self._stamp = self._stat()
        self._failed: Stamp | object = object()  # the stamp of the last pair that did not load (logged once)
        self._checked = clock()
        context.sni_callback = self._hello

    def _stat(self) -> Stamp:
        try:
            stats = [os.stat(self.tls.cert_file), os.stat(self.tls.key_file)]
        except OSError:
            return None
        return tuple((st.st_mtime_ns, st.st_size, st.st_ino) for st in stats)

    def _hello(self, connection: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _ctx: ssl.SSLContext) -> None:
        try:
            self.check()
            if self.current is not self.context:
                connection.context = self.current
        except Exception:  # never fail a handshake because of the renewal: it goes on with the old certificate
            log.exception("TLS: cannot check the certificate files")

    def check(self, *, force: bool = False) -> None:
        """Load the files again if they changed (at most once per interval unless ``force``)."""
        now = self._clock()
        if not force and now - self._checked < CERT_CHECK_INTERVAL:
            return
        self._checked = now
        stamp = self._stat()
        if stamp in (self._stamp, self._failed):
            return
        try:
            fresh = self.tls.ssl_context()
        except (ssl.SSLError, OSError, ValueError) as exc:
            self._failed = stamp
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
            log.error(
                "TLS: the changed certificate and key (%s, %s) do not load, the running ones stay: %s",
                self.tls.cert_file,
                self.tls.key_file,
                reason,
            )
            return
        self.current, self._stamp = fresh, stamp
        log.info("TLS: certificate and key loaded again from %s", self.tls.cert_file)

    def use(self, tls: TLSServerConfig) -> None:
        """Follow the files of a reloaded web config (same settings, maybe other paths)."""
        if tls != self.tls:
            self.tls, self._stamp = tls, object()  # type: ignore[assignment]  # differs from any stamp
            self.check(force=True)


class LiveWebConfig:
    """The web config the exporter serves with, read again on reload (``SIGHUP``, ``POST /-/reload``).

    ``basic_auth_users`` and the certificate and key files take effect at once (``set_users`` is the auth gate's);
    switching TLS on or off, or changing its other settings (client auth, versions), needs a restart and is said so.
    A file with a problem keeps the running web config.
    """

    def __init__(
        self,
        path: str | Path,
        config: WebConfig,
        set_users: Callable[[tuple[tuple[str, Secret], ...]], None] | None = None,
    ) -> None:
        self.path = path
        self.config = config
        self.set_users = set_users
        self.tls = (
            RenewingTLS(config.tls, config.ssl_context)
            if config.tls is not None and config.ssl_context is not None
            else None
        )

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        return self.tls.context if self.tls is not None else None

    def reload(self) -> str:
        """Re-read the file; a one-line account of what happened (logged too)."""
        try:
            new = load_web_config(self.path)
        except WebConfigError as exc:
            log.error("web config reload rejected, the running one stays: %s: %s", exc.source, "; ".join(exc.problems))
            return f"web config rejected, the running one stays: {exc.render()}"
        old = self.config
        notes = []
        if (new.tls is None) != (old.tls is None) or (
            new.tls is not None
            and old.tls is not None
            and replace(new.tls, cert_file="", key_file="") != replace(old.tls, cert_file="", key_file="")
        ):
            notes.append("its TLS settings other than cert_file and key_file need a restart")
            new = replace(new, tls=old.tls, ssl_context=old.ssl_context)
        elif self.tls is not None and new.tls is not None:
            self.tls.use(new.tls)
        if self.set_users is not None:
            self.set_users(new.users)
        self.config = new
        message = new.summary() + (f" ({'; '.join(notes)})" if notes else "")
        (log.warning if notes else log.info)("web config reloaded: %s", message)
        return f"web config {message}"


__all__ = [
    "LiveWebConfig",
    "RenewingTLS",
    "TLSServerConfig",
    "WebConfig",
    "WebConfigError",
    "load_web_config",
    "parse_web_config",
]
