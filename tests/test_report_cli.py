"""`pulsatrix-exporter report` as a user meets it: exit codes, the one-line errors, no credential in any output."""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from tests.support.cli import report_in_process

SECRET = "s3cr3t-Pa55"


class FakeAPI(BaseHTTPRequestHandler):
    """A Prometheus query API with one charger and one ended session, checking basic auth when asked."""

    require: str | None = None
    seen: list[dict[str, list[str]]]

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode())
        type(self).seen.append(form)
        if self.require is not None and self.headers.get("Authorization") != self.require:
            self._send(401, {"status": "error", "errorType": "unauthorized", "error": "authentication required"})
            return
        labels = {"charger": "garage", "site": "home", "job": "pulsatrix", "instance": "exporter:9821"}
        query = form.get("query", [""])[0]
        if self.path == "/api/v1/series":
            self._send(200, {"status": "success", "data": [{"__name__": "x", **labels}]})
        elif self.path == "/api/v1/query_range":
            t = 1_772_370_000.0  # 2026-03-01T14:00:00+01:00, five minutes after the end below
            snap = {
                "pulsatrix_session_start_timestamp_seconds": 1_772_362_800,
                "pulsatrix_session_end_timestamp_seconds": 1_772_369_700,
                "pulsatrix_session_meter_start_joules": 1_200.0 * 3.6e6,
                "pulsatrix_session_energy_joules": 7.5 * 3.6e6,
            }
            result: list[dict[str, Any]] = [
                {"metric": {"__name__": name, **labels}, "values": [[t, str(v)]]} for name, v in snap.items()
            ]
            result.append(
                {
                    "metric": {
                        "__name__": "pulsatrix_session_info",
                        **labels,
                        "start_reason": "Authorized",
                        "stop_reason": "EVDisconnected",
                    },
                    "values": [[t, "1"]],
                }
            )
            # the report asks one series per query (last_over_time(<name>{...}[...]) and on(...) (...))
            asked = re.match(r"[a-z_]+", query.removeprefix("last_over_time(")).group(0)  # type: ignore[union-attr]
            result = [r for r in result if r["metric"]["__name__"] == asked]
            self._send(200, {"status": "success", "data": {"resultType": "matrix", "result": result}})
        else:
            at = float(form["time"][0])
            value = 1_200.0 if at < 1_772_370_000 else 1_207.5
            result = []
            if "energy_imported" in query:  # the meter's raw samples before a bound: one, ten seconds before it
                result = [{"metric": labels, "values": [[at - 10, str(value * 3.6e6)]]}]
                self._send(200, {"status": "success", "data": {"resultType": "matrix", "result": result}})
                return
            self._send(200, {"status": "success", "data": {"resultType": "vector", "result": result}})

    def _send(self, code: int, doc: object) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def api() -> Iterator[tuple[str, type[FakeAPI]]]:
    handler = type("Handler", (FakeAPI,), {"seen": [], "require": None})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


run = report_in_process


MARCH = ("--month", "2026-03", "--tz", "Europe/Berlin")


def test_sessions_csv_has_the_issue_columns_and_the_device_values(
    api: tuple[str, type[FakeAPI]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = api
    code, out, err = run(capsys, "sessions", "--prometheus", url, *MARCH, "--price", "0.30")
    assert (code, err) == (0, "pulsatrix-exporter report: source: raw\n")
    assert out.splitlines() == [
        "charger,site,period_start,period_end,start,end,duration_s,energy_kwh,meter_start_kwh,meter_stop_kwh,"
        "start_reason,stop_reason,status,flags,cost,currency,avg_price",
        "garage,home,2026-03-01T00:00:00+01:00,2026-04-01T00:00:00+02:00,2026-03-01T12:00:00+01:00,"
        "2026-03-01T13:55:00+01:00,6900,7.500,1200.000,1207.500,Authorized,EVDisconnected,ended,,2.25,EUR,0.3000",
    ]


def test_json_carries_numbers_as_numbers(api: tuple[str, type[FakeAPI]], capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = api
    code, out, _ = run(capsys, "summary", "--prometheus", url, *MARCH, "--format", "json")
    assert code == 0
    assert json.loads(out) == [
        {
            "charger": "garage",
            "site": "home",
            "period_start": "2026-03-01T00:00:00+01:00",
            "period_end": "2026-04-01T00:00:00+02:00",
            "energy_kwh": 7.5,
            "sessions": 1,
            "meter_start_kwh": 1200.0,
            "meter_start_time": "2026-02-28T23:59:50+01:00",
            "meter_end_kwh": 1207.5,
            "meter_end_time": "2026-03-31T23:59:50+02:00",
            "flags": "",
            "source": "raw",
        }
    ]
    code, out, _ = run(capsys, "sessions", "--prometheus", url, *MARCH, "--format", "json", "--price", "0.3")
    assert '"cost": 2.25, "currency": "EUR", "avg_price": 0.3000, "source": "raw"}' in out  # money: two decimals


def test_table_is_aligned_for_a_terminal(api: tuple[str, type[FakeAPI]], capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = api
    code, out, _ = run(
        capsys, "summary", "--prometheus", url, *MARCH, "--by", "site", "--format", "table", "--price", "0.3"
    )
    assert code == 0
    assert out.splitlines() == [
        "site  period_start               period_end                 energy_kwh  sessions  chargers  flags  cost  "
        "currency  avg_price",
        "----  -------------------------  -------------------------  ----------  --------  --------  -----  ----  "
        "--------  ---------",
        "home  2026-03-01T00:00:00+01:00  2026-04-01T00:00:00+02:00       7.500         1         1         2.25  EUR"
        "          0.3000",
    ]


def test_a_period_without_data_prints_the_header_and_a_note(
    api: tuple[str, type[FakeAPI]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = api
    code, out, err = run(capsys, "sessions", "--prometheus", url, "--month", "2025-03", "--tz", "UTC")
    assert code == 0
    # the same columns as a month with data: monthly files line up
    assert out.splitlines()[0].startswith("charger,site,period_start,period_end,start,end,")
    assert len(out.splitlines()) == 1
    assert "pulsatrix-exporter report: no sessions in 2025-03 at http://127.0.0.1:" in err


def test_an_unreachable_server_is_one_line_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out, err = run(capsys, "sessions", "--prometheus", f"http://127.0.0.1:{port}", *MARCH)
    assert (code, out) == (1, "")
    assert err == f"pulsatrix-exporter report: cannot reach http://127.0.0.1:{port}: connection refused\n"


def test_refused_credentials_are_one_line_and_never_printed(
    api: tuple[str, type[FakeAPI]], capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, handler = api
    handler.require = "Basic " + base64.b64encode(b"ledger:right").decode()
    secret = tmp_path / "password"
    secret.write_text(SECRET + "\n")
    code, out, err = run(
        capsys, "sessions", "--prometheus", url, *MARCH, "--basic-user", "ledger", "--basic-password-file", str(secret)
    )
    assert (code, out) == (1, "")
    assert (
        err == f"pulsatrix-exporter report: {url} refused the query: HTTP 401 Unauthorized (authentication required)\n"
    )
    assert SECRET not in err
    monkeypatch.setenv("PULSATRIX_REPORT_TOKEN", SECRET)
    code, out, err = run(capsys, "sessions", "--prometheus", url, *MARCH)
    assert code == 1 and SECRET not in out + err
    secret.write_text("right")
    code, out, err = run(
        capsys, "sessions", "--prometheus", url, *MARCH, "--basic-user", "ledger", "--basic-password-file", str(secret)
    )
    assert code == 0 and "garage" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--start", "2026-03-02", "--end", "2026-03-01"), "--end (2026-03-01) must be after --start (2026-03-02)"),
        (("--month", "2026-03", "--tz", "Europe/Berlln"), "--tz: unknown time zone 'Europe/Berlln'"),
        (("--month", "2026-03", "--match", "site=depot-3"), "--match: 'site=depot-3' is not a label matcher"),
        (("--month", "2026-03", "--match", '__name__="x"'), "--match: the metric name is chosen by the report"),
        (("--year", "26"), "--year: expected YYYY, last or this, got '26'"),
        (("--month", "2026-03", "--replica-label", "a-b"), "--replica-label: 'a-b' is not a label name"),
        (("--month", "previous"), "--month: expected YYYY-MM, last or this, got 'previous'"),
        (("--month", "last", "--format", "xlsx"), "--format xlsx needs --output FILE"),
        (("--month", "last", "--tariff", "/none.yml"), "--tariff: /none.yml: cannot read the tariff file"),
    ],
)
def test_usage_errors_exit_2_with_the_reason(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    code, out, err = run(capsys, "sessions", "--prometheus", "http://127.0.0.1:9", *args)
    assert (code, out) == (2, "")
    assert f"pulsatrix-exporter report: error: {message}" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "127.0.0.1:19091",
            "--prometheus: '127.0.0.1:19091' has no scheme; write the server's URL with it, e.g. http://127.0.0.1:19091",
        ),
        (
            "http://prom.example:9090/api/v1",
            "--prometheus: 'http://prom.example:9090/api/v1' ends in /api/v1, which the report appends itself; "
            "give the server's base URL (http://prom.example:9090)",
        ),
    ],
    ids=["no-scheme", "api-v1"],
)
def test_a_url_a_user_may_well_write_is_explained(capsys: pytest.CaptureFixture[str], url: str, message: str) -> None:
    code, out, err = run(capsys, "sessions", "--prometheus", url, *MARCH)
    assert (code, out) == (2, "")
    assert err.endswith(f"pulsatrix-exporter report: error: {message}\n")


def test_credentials_in_the_url_are_refused_without_echoing_them(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "sessions", "--prometheus", f"http://ledger:{SECRET}@127.0.0.1:9", *MARCH)
    assert code == 2 and "credentials in the URL are not allowed" in err and SECRET not in err


def test_matchers_reach_every_selector(api: tuple[str, type[FakeAPI]], capsys: pytest.CaptureFixture[str]) -> None:
    url, handler = api
    code, _, _ = run(capsys, "summary", "--prometheus", url, *MARCH, "--match", 'site="home"')
    assert code == 0
    queries = [f["query"][0] for f in handler.seen if "query" in f] + [
        f["match[]"][0] for f in handler.seen if "match[]" in f
    ]
    # every query but the ledger rules' heartbeat (one series without charger labels) selects with the matchers
    selecting = [q for q in queries if "pulsatrix:ledger_recording" not in q]
    assert selecting and all('site="home"' in q for q in selecting)
