"""A small client for the Prometheus HTTP query API (Prometheus, VictoriaMetrics, Thanos Query, Mimir).

Blocking (urllib, run from a thread pool by the caller): the report is a batch job and the standard library's
client is enough for POSTed form queries. Credentials go into one header built here and never into a message:
every error names the server by its URL without userinfo, and the reason, nothing else.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any


class QueryError(RuntimeError):
    """The server could not be asked or refused: one line for the user, exit 1."""


@dataclass(frozen=True, slots=True)
class Auth:
    basic: tuple[str, str] | None = None
    bearer: str | None = None
    ca_file: str | None = None

    def header(self) -> str | None:
        if self.basic is not None:
            raw = f"{self.basic[0]}:{self.basic[1]}".encode()
            return "Basic " + base64.b64encode(raw).decode("ascii")
        if self.bearer is not None:
            return f"Bearer {self.bearer}"
        return None

    def __repr__(self) -> str:  # never shows a secret, even in a debugger or a log of the object
        return f"Auth(basic={'set' if self.basic else None}, bearer={'set' if self.bearer else None})"


@dataclass(slots=True)
class PromClient:
    url: str  # base URL, e.g. http://prometheus:9090 or https://vm.example/select/0/prometheus
    auth: Auth = field(default_factory=Auth)
    timeout: float = 120.0
    queries: int = 0  # how many requests were sent (the benchmark reports it)
    _context: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        parsed = urllib.parse.urlsplit(self.url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"--prometheus: expected an http:// or https:// URL, got {self.shown!r}")
        if parsed.username or parsed.password:
            raise ValueError(
                "--prometheus: credentials in the URL are not allowed; use --basic-user and "
                "--basic-password-file (or the bearer token options)"
            )
        if parsed.scheme == "https":
            self._context = ssl.create_default_context(cafile=self.auth.ca_file)
        self.url = self.url.rstrip("/")

    @property
    def shown(self) -> str:
        """The URL without userinfo, query or fragment: what messages name."""
        parsed = urllib.parse.urlsplit(self.url)
        host = parsed.hostname or "?"
        if ":" in host:
            host = f"[{host}]"
        port = f":{parsed.port}" if parsed.port else ""
        return f"{parsed.scheme}://{host}{port}{parsed.path}"

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        """An instant query: the vector's samples (or a range selector's raw samples) as the API returns them."""
        data = self._post("/api/v1/query", {"query": expr, "time": f"{at:.3f}"})
        if data.get("resultType") not in ("vector", "matrix"):
            raise QueryError(f"{self.shown}: expected a vector result, got {data.get('resultType')!r}")
        result: list[dict[str, Any]] = data.get("result", [])
        return result

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        data = self._post(
            "/api/v1/query_range", {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        )
        result: list[dict[str, Any]] = data.get("result", [])
        return result

    def series(self, match: str, start: float, end: float) -> list[dict[str, str]]:
        data = self._post("/api/v1/series", {"match[]": match, "start": f"{start:.3f}", "end": f"{end:.3f}"})
        return list(data) if isinstance(data, list) else []

    def _post(self, path: str, form: dict[str, str]) -> Any:
        body = urllib.parse.urlencode(form).encode()
        request = urllib.request.Request(self.url + path, data=body, method="POST")  # noqa: S310 (scheme checked)
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
        request.add_header("Accept", "application/json")
        header = self.auth.header()
        if header is not None:
            request.add_header("Authorization", header)
        self.queries += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._context) as response:  # noqa: S310
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise QueryError(f"{self.shown} refused the query: HTTP {exc.code} {exc.reason}{_api_error(exc)}") from None
        except urllib.error.URLError as exc:
            raise QueryError(f"cannot reach {self.shown}: {_reason(exc.reason)}") from None
        except (TimeoutError, OSError) as exc:
            raise QueryError(f"cannot reach {self.shown}: {_reason(exc)}") from None
        try:
            doc = json.loads(payload)
        except ValueError:
            raise QueryError(f"{self.shown} did not answer with Prometheus API JSON (is it the right URL?)") from None
        if not isinstance(doc, dict) or doc.get("status") != "success":
            error = doc.get("error", "unknown error") if isinstance(doc, dict) else "unknown error"
            raise QueryError(f"{self.shown} refused the query: {str(error)[:300]}")
        return doc.get("data")


def _api_error(exc: urllib.error.HTTPError) -> str:
    """The API's own error text (Prometheus puts it in the JSON body of a 400/422/503), shortened."""
    try:
        doc = json.loads(exc.read())
    except (ValueError, OSError):
        return ""
    if isinstance(doc, dict) and doc.get("error"):
        return f" ({str(doc['error'])[:300]})"
    return ""


def _reason(reason: object) -> str:
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({reason.verify_message}); pass its CA with --ca-file"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, TimeoutError):
        return "timed out"
    text = getattr(reason, "strerror", None) or str(reason)
    return str(text)
