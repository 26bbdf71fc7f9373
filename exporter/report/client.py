"""A small client for the Prometheus HTTP query API (Prometheus, VictoriaMetrics, Thanos Query, Mimir).

Blocking (http.client, run from a thread pool by the caller): the report is a batch job and the standard library's
client is enough for POSTed form queries. It trusts the server only so far:

* **Credentials go to the ``--prometheus`` origin only.** They are one header built here, never part of a message
  (every error names the server by its URL without userinfo); redirects are never followed (a 3xx is one line
  naming the server and where it pointed), and no proxy from the environment is used.
* **Bounded.** An answer larger than ``max_bytes`` (``--max-answer-size``, 256 MiB by default) is refused, before
  reading it when its length is announced; ``timeout`` bounds each whole request (connecting, the TLS handshake,
  headers and body), not each read, so a server dripping a byte a second cannot hold the report.
* **Validated.** Every answer is checked for the shape the report reads (a vector or matrix of series with string
  labels and ``[time, "value"]`` samples, or a list of label sets) before it is returned, so that the rest of the
  report can trust it: broken, over-deep or wrongly typed JSON, HTML, anything else is one :class:`QueryError`.
* **The server's text is cut and escaped** (:func:`server_text`) before it reaches the user's terminal.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import math
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from exporter import __version__

MAX_ANSWER_BYTES: Final = 256 << 20  # a year of a 1,000-charger fleet's session series is ~30 MiB of JSON
CHUNK: Final = 1 << 16
MAX_SHOWN: Final = 200  # characters of the server's own text in a message
ERROR_BODY_BYTES: Final = 64 << 10  # read of a refusal's body, for its error text


class QueryError(RuntimeError):
    """The server could not be asked, refused, or answered something unusable: one line for the user, exit 1."""


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


def server_text(text: object, limit: int = MAX_SHOWN) -> str:
    """Text that came from the server, safe for a terminal: control characters escaped, cut to ``limit``."""
    raw = str(text)
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in raw[: limit + 1])
    return shown[:limit] + "..." if len(raw) > limit or len(shown) > limit else shown


@dataclass(slots=True)
class PromClient:
    url: str  # base URL, e.g. http://prometheus:9090 or https://vm.example/select/0/prometheus
    auth: Auth = field(default_factory=Auth)
    timeout: float = 120.0  # seconds for each whole request
    max_bytes: int = MAX_ANSWER_BYTES  # of each answer's body
    queries: int = 0  # how many requests were sent (the benchmark reports it)
    _context: ssl.SSLContext | None = None
    _origin: tuple[str, int] = ("", 0)  # host and port: where the requests, and the credentials, go
    _path: str = ""
    _reading: int = 0  # bytes of the answers being read right now, by every thread: together under max_bytes too
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        parsed = urllib.parse.urlsplit(self.url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"--prometheus: expected an http:// or https:// URL, got {self.shown!r}")
        if parsed.username or parsed.password:
            raise ValueError(
                "--prometheus: credentials in the URL are not allowed; use --basic-user and "
                "--basic-password-file (or the bearer token options)"
            )
        try:
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
        except ValueError:
            raise ValueError(f"--prometheus: the port of {self.shown!r} is not a number from 1 to 65535") from None
        if parsed.scheme == "https":
            self._context = ssl.create_default_context(cafile=self.auth.ca_file)
        self.url = self.url.rstrip("/")
        self._origin = (parsed.hostname, port)
        self._path = parsed.path.rstrip("/")

    @property
    def shown(self) -> str:
        """The URL without userinfo, query or fragment: what messages name."""
        parsed = urllib.parse.urlsplit(self.url)
        host = parsed.hostname or "?"
        if ":" in host:
            host = f"[{host}]"
        try:
            port = f":{parsed.port}" if parsed.port else ""
        except ValueError:
            port = ""
        return f"{parsed.scheme}://{host}{port}{parsed.path}"

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        """An instant query: the vector's samples (or a range selector's raw samples) as the API returns them. Only
        a range selector (``...[300s]``) may answer a matrix: the callers of the others read each series' ``value``."""
        kinds = ("vector", "matrix") if expr.rstrip().endswith("]") else ("vector",)
        return self._result(self._post("/api/v1/query", {"query": expr, "time": f"{at:.3f}"}), kinds)

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        form = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        return self._result(self._post("/api/v1/query_range", form), ("matrix",))

    def series(self, match: str, start: float, end: float) -> list[dict[str, str]]:
        data = self._post("/api/v1/series", {"match[]": match, "start": f"{start:.3f}", "end": f"{end:.3f}"})
        if not isinstance(data, list) or not all(_labels(item) for item in data):
            raise self._malformed("a list of label sets")
        return data

    def _result(self, data: Any, kinds: tuple[str, ...]) -> list[dict[str, Any]]:
        """The ``result`` of a query answer, every series checked: labels are strings, samples [time, "value"]."""
        if not isinstance(data, dict) or data.get("resultType") not in kinds:
            kind = data.get("resultType") if isinstance(data, dict) else None
            raise QueryError(f"{self.shown}: expected a {' or '.join(kinds)} result, got {server_text(kind, 40)!r}")
        result = data.get("result")
        if not isinstance(result, list):
            raise self._malformed("a list of series")
        for series in result:
            if not isinstance(series, dict) or not _labels(series.get("metric")):
                raise self._malformed("series with string labels")
            samples = series.get("values") if data["resultType"] == "matrix" else [series.get("value")]
            if not isinstance(samples, list) or not all(_sample(s) for s in samples):
                raise self._malformed('samples as [time, "value"]')
        return result

    def _malformed(self, expected: str) -> QueryError:
        return QueryError(f"{self.shown} did not answer with Prometheus API JSON: expected {expected}")

    def _post(self, path: str, form: dict[str, str]) -> Any:
        body = urllib.parse.urlencode(form).encode()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
            "User-Agent": f"pulsatrix-exporter/{__version__} report",
        }
        header = self.auth.header()
        if header is not None:
            headers["Authorization"] = header
        self.queries += 1
        host, port = self._origin
        connection = http.client.HTTPConnection(host, port, timeout=self.timeout)
        watchdog = _Watchdog(self.timeout)
        try:
            # Connected here, not by http.client: the watchdog holds the socket itself (http.client lets go of it
            # once a reply says it closes the connection), and it can cut the TLS handshake too.
            sock = socket.create_connection((host, port), timeout=self.timeout)
            if self._context is not None:
                sock = self._context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
            watchdog.watch(sock)
            if isinstance(sock, ssl.SSLSocket):
                sock.do_handshake()
            connection.sock = sock
            connection.request("POST", self._path + path, body=body, headers=headers)
            response = connection.getresponse()
            payload = self._read(response, watchdog)
        except QueryError:
            raise
        except (OSError, http.client.HTTPException) as exc:
            if watchdog.expired:
                raise self._too_slow() from None
            raise QueryError(f"cannot reach {self.shown}: {_reason(exc)}") from None
        finally:
            watchdog.cancel()
            connection.close()
        return self._decode(payload)

    def _read(self, response: http.client.HTTPResponse, watchdog: _Watchdog) -> bytearray:
        status = response.status
        if 300 <= status < 400:
            target = server_text(response.getheader("Location") or "nowhere")
            raise QueryError(
                f"{self.shown} answered HTTP {status} redirecting to {target}: not followed (credentials are only "
                "ever sent to --prometheus); give --prometheus the URL that answers the query API itself"
            )
        if status != 200:
            error = _api_error(response.read(ERROR_BODY_BYTES) if not watchdog.expired else b"")
            raise QueryError(f"{self.shown} refused the query: HTTP {status} {server_text(response.reason)}{error}")
        length = response.getheader("Content-Length")
        if length is not None and length.strip().isdigit() and int(length) > self.max_bytes:
            raise self._too_large(" to one query")
        payload = bytearray()
        refused = ""
        try:
            while chunk := response.read1(CHUNK):
                payload += chunk
                with self._lock:
                    self._reading += len(chunk)
                    together = self._reading
                if len(payload) > self.max_bytes:
                    refused = " to one query"
                elif together > self.max_bytes:  # the queries run in parallel threads: bound their sum as well
                    refused = " together to the queries in flight"
                if refused:
                    break
        finally:
            with self._lock:
                self._reading -= len(payload)
        if refused:
            # Freed before raising: the error's traceback keeps this frame, and the report's thread pool keeps the
            # errors of the queries that failed (each would hold its answer until the report ends).
            payload.clear()
            raise self._too_large(refused)
        if watchdog.expired:  # the watchdog cut the connection: what was read is not the whole answer
            raise self._too_slow()
        return payload

    def _decode(self, payload: bytearray) -> Any:
        problem = ""
        try:
            doc = json.loads(payload)
        except RecursionError:
            problem = ": nested too deeply"
        except ValueError:  # its .doc is the whole answer: raised outside this block, the error does not keep it
            problem = " (is it the right URL?)"
        payload.clear()
        if problem:
            raise QueryError(f"{self.shown} did not answer with Prometheus API JSON{problem}")
        if not isinstance(doc, dict) or doc.get("status") != "success":
            error = doc.get("error", "unknown error") if isinstance(doc, dict) else "not a JSON object"
            raise QueryError(f"{self.shown} refused the query: {server_text(error)}")
        return doc.get("data")

    def _too_large(self, to: str) -> QueryError:
        return QueryError(
            f"{self.shown} answered more than {_size(self.max_bytes)}{to}: refused (raise "
            "--max-answer-size, or ask for less: a shorter period or --match)"
        )

    def _too_slow(self) -> QueryError:
        return QueryError(f"{self.shown} did not answer within --timeout {self.timeout:g} s")


class _Watchdog:
    """Cuts the connection when the whole request has taken ``timeout`` seconds: socket timeouts bound each read
    only, and a server may send one byte just before each of them."""

    def __init__(self, timeout: float) -> None:
        self.expired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(timeout, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            if self.expired:
                self._cut()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            self._cut()

    def _cut(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                # wakes a blocked read, unlike close() from another thread; socket's own shutdown, not SSLSocket's
                # (which would drop the TLS state under the reading thread)
                socket.socket.shutdown(self._sock, socket.SHUT_RDWR)

    def cancel(self) -> None:
        self._timer.cancel()


def _labels(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _sample(value: Any) -> bool:
    """``[time, "value"]`` as the API sends it: a number and a float's text (``"NaN"``, ``"+Inf"`` included)."""
    if not isinstance(value, list) or len(value) != 2:
        return False
    at, text = value
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at) or not isinstance(text, str):
        return False
    try:
        float(text)
    except ValueError:
        return False
    return True


def _api_error(body: bytes) -> str:
    """The API's own error text (Prometheus puts it in the JSON body of a 400/422/503), cut and escaped."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    if isinstance(doc, dict) and doc.get("error"):
        return f" ({server_text(doc['error'])})"
    return ""


def answer_size(text: str) -> int:
    """``--max-answer-size``: bytes, or with a unit (``512MiB``, ``2GiB``)."""
    number = text.strip()
    scale = 1
    for unit, factor in (("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30)):
        if number.endswith(unit):
            number, scale = number.removesuffix(unit).strip(), factor
            break
    if not number.isdigit() or not 1 <= int(number) * scale <= 1 << 40:
        raise ValueError(f"expected a size such as 256MiB or 1GiB, got {text!r}")
    return int(number) * scale


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n} bytes"


_REASONS: Final[list[tuple[type[BaseException], Callable[[BaseException], str]]]] = [
    (
        ssl.SSLCertVerificationError,
        lambda e: f"TLS certificate not trusted ({getattr(e, 'verify_message', '')}); pass its CA with --ca-file",
    ),
    (ConnectionRefusedError, lambda _: "connection refused"),
    (TimeoutError, lambda _: "timed out"),
    (http.client.RemoteDisconnected, lambda _: "the server closed the connection without answering"),
    (http.client.HTTPException, lambda e: f"not an HTTP answer ({type(e).__name__})"),
]


def _reason(exc: BaseException) -> str:
    for kind, say in _REASONS:
        if isinstance(exc, kind):
            return say(exc)
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return server_text(text)
