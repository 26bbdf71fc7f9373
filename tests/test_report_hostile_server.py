"""`report` against a query server that cannot be trusted (issue 26): redirects, endless or huge answers, answers of
the wrong shape, escape codes. Every case is one line on stderr and exit 1, never a traceback, and the credentials go
to the --prometheus origin only. Servers on loopback, each request bounded."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import report_in_process

SECRET = "s3cr3t-Pa55"
MARCH = ("--month", "2026-03", "--tz", "Europe/Berlin")
Answer = Callable[[BaseHTTPRequestHandler], None]


class Handler(BaseHTTPRequestHandler):
    answer: Answer
    seen: list[tuple[str, str | None]]  # (path, Authorization)

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def _serve(self) -> None:
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        with contextlib.suppress(OSError):  # the client gave up: what these tests want
            type(self).answer(self)


def send(handler: BaseHTTPRequestHandler, body: bytes, status: int = 200, **headers: str) -> None:
    handler.send_response(status)
    for name, value in {"Content-Type": "application/json", "Content-Length": str(len(body)), **headers}.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


def send_json(handler: BaseHTTPRequestHandler, doc: object, status: int = 200) -> None:
    send(handler, json.dumps(doc).encode(), status)


@pytest.fixture
def serve() -> Iterator[Callable[[Answer], tuple[str, type[Handler]]]]:
    servers: list[ThreadingHTTPServer] = []

    def start(answer: Answer) -> tuple[str, type[Handler]]:
        handler = type("H", (Handler,), {"answer": staticmethod(answer), "seen": []})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", handler

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


run = report_in_process


def run_process(*args: str, timeout: float) -> tuple[int, str, float, int]:
    """The report in a process of its own: exit code, stderr, seconds taken, peak RSS in KiB."""
    code = (
        "import resource, sys; from exporter.cli import main; code = main(sys.argv[1:]); "
        "print('maxrss', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(code)"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code, "report", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    lines = done.stderr.splitlines()
    rss = int(lines.pop().split()[1]) if lines and lines[-1].startswith("maxrss") else 0
    return done.returncode, "\n".join(lines) + "\n", time.monotonic() - started, rss


def test_a_redirect_is_never_followed_and_the_credentials_stay_home(
    serve: Callable[[Answer], tuple[str, type[Handler]]], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    elsewhere, other = serve(lambda h: send_json(h, {"status": "success", "data": []}))
    url, _ = serve(lambda h: send(h, b"", 302, Location=f"{elsewhere}/api/v1/series"))
    password = tmp_path / "password"
    password.write_text(SECRET)
    auth = ("--basic-user", "ledger", "--basic-password-file", str(password))
    code, out, err = run(capsys, "sessions", "--prometheus", url, *MARCH, *auth)
    assert (code, out) == (1, "")
    assert err.startswith(
        f"pulsatrix-exporter report: {url} answered HTTP 302 redirecting to {elsewhere}/api/v1/series"
    )
    assert err.count("\n") == 1 and SECRET not in err
    assert other.seen == [], "the other host was never asked, so it never saw the credentials"


def test_answers_over_the_size_cap_are_refused_with_bounded_memory(
    serve: Callable[[Answer], tuple[str, type[Handler]]],
) -> None:
    """300 MB without a Content-Length to every query after the first (two run at once): read up to the default
    cap of 256 MiB, for all of them together, then one line."""
    labels = {"__name__": "x", "charger": "garage", "site": "home", "job": "pulsatrix", "instance": "e:9821"}

    def huge(handler: BaseHTTPRequestHandler) -> None:
        if handler.path.endswith("/series"):
            send_json(handler, {"status": "success", "data": [labels]})
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(b'{"status": "success", "data": ["')
        block = b"x" * (1 << 20)
        for _ in range(300):
            handler.wfile.write(block)

    url, _ = serve(huge)
    code, err, _, rss = run_process("summary", "--prometheus", url, *MARCH, "--source", "raw", timeout=120)
    assert code == 1
    assert err.startswith(f"pulsatrix-exporter report: {url} answered more than 256 MiB ") and err.count("\n") == 1
    assert "refused (raise --max-answer-size, or ask for less: a shorter period or --match)" in err
    assert rss < 400 * 1024, f"peak RSS {rss // 1024} MiB"


def test_timeout_bounds_the_whole_request_of_a_dripping_server(
    serve: Callable[[Answer], tuple[str, type[Handler]]],
) -> None:
    stop = threading.Event()

    def drip(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.end_headers()
        handler.wfile.write(b'{"status": "success", "data": [')
        while not stop.wait(0.2):  # a byte every 0.2 s, forever: each read alone is well within the timeout
            handler.wfile.write(b" ")
            handler.wfile.flush()

    url, _ = serve(drip)
    try:
        code, err, took, _ = run_process("sessions", "--prometheus", url, *MARCH, "--timeout", "2", timeout=60)
    finally:
        stop.set()
    assert code == 1
    assert err == f"pulsatrix-exporter report: {url} did not answer within --timeout 2 s\n"
    assert took < 15, f"took {took:.1f} s"


HOSTILE_ANSWERS: dict[str, bytes] = {
    "broken JSON": b'{"status": "success", "data": [',
    "over-deep JSON": b"[" * 200_000 + b"]" * 200_000,
    "HTML": b"<!doctype html><html><body>Sign in</body></html>",
    "data not a list": json.dumps({"status": "success", "data": 5}).encode(),
    "label not a string": json.dumps({"status": "success", "data": [{"charger": 7}]}).encode(),
    "status not an object": json.dumps(["success"]).encode(),
}


@pytest.mark.parametrize("name", HOSTILE_ANSWERS)
def test_a_malformed_answer_is_one_line(
    name: str, serve: Callable[[Answer], tuple[str, type[Handler]]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = serve(lambda h: send(h, HOSTILE_ANSWERS[name]))
    code, out, err = run(capsys, "sessions", "--prometheus", url, *MARCH)
    assert (code, out) == (1, "")
    assert err.startswith(f"pulsatrix-exporter report: {url} ") and err.count("\n") == 1, err


def series_then(result: list[dict[str, Any]]) -> Answer:
    """Answers /api/v1/series with one charger, every instant query with ``result`` and range queries with none."""
    labels = {"__name__": "x", "charger": "garage", "site": "home", "job": "pulsatrix", "instance": "e:9821"}

    def answer(handler: BaseHTTPRequestHandler) -> None:
        if handler.path.endswith("/series"):
            send_json(handler, {"status": "success", "data": [labels]})
        elif handler.path.endswith("/query_range"):
            send_json(handler, {"status": "success", "data": {"resultType": "matrix", "result": []}})
        else:
            send_json(handler, {"status": "success", "data": {"resultType": "vector", "result": result}})

    return answer


@pytest.mark.parametrize(
    "series",
    [
        {"metric": {"charger": "garage"}, "value": [1.7e9, 12]},  # a number where the API sends a string
        {"metric": {"charger": "garage"}, "value": [1.7e9, "twelve"]},
        {"metric": {"charger": "garage"}, "value": ["noon", "1"]},
        {"metric": {"charger": "garage"}, "values": [[1.7e9, "1"]]},  # a matrix where a vector is asked for
        {"metric": ["charger"], "value": [1.7e9, "1"]},
        {"metric": {"charger": "garage"}},
        "garage",
    ],
)
def test_wrongly_typed_series_are_one_line(
    series: Any, serve: Callable[[Answer], tuple[str, type[Handler]]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = serve(series_then([series]))
    code, out, err = run(capsys, "summary", "--prometheus", url, *MARCH, "--source", "raw")
    assert (code, out) == (1, "")
    assert err.startswith(f"pulsatrix-exporter report: {url} ") and err.count("\n") == 1, err


def test_the_servers_text_is_cut_and_its_escape_codes_shown_escaped(
    serve: Callable[[Answer], tuple[str, type[Handler]]], capsys: pytest.CaptureFixture[str]
) -> None:
    error = "\x1b[2J\x1b[31mhacked\x1b[0m\r\n" + "x" * 5000
    url, _ = serve(lambda h: send_json(h, {"status": "error", "error": error}, status=400))
    code, _, err = run(capsys, "sessions", "--prometheus", url, *MARCH)
    assert code == 1
    assert "\x1b" not in err and "\r" not in err and err.count("\n") == 1
    assert "\\x1b[2J\\x1b[31mhacked" in err
    assert len(err) < 500


def test_json_output_has_null_where_the_server_sent_nan(
    serve: Callable[[Answer], tuple[str, type[Handler]]], capsys: pytest.CaptureFixture[str]
) -> None:
    labels = {"charger": "garage", "site": "home", "job": "pulsatrix", "instance": "e:9821"}
    url, _ = serve(series_then([{"metric": labels, "value": [1.7e9, "NaN"]}]))
    code, out, _ = run(capsys, "summary", "--prometheus", url, *MARCH, "--source", "raw", "--format", "json")
    assert code == 0

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in the JSON output")

    rows = json.loads(out, parse_constant=refuse)
    assert rows and rows[0]["charger"] == "garage"
