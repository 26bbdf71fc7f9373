"""A Prometheus query API on loopback with one charger and one ended session, for the report's file and pricing
options (a real Prometheus proves the figures in tests/e2e/test_report_prices_e2e.py; this proves the plumbing fast).

The session: garage (site home), 2026-03-01 12:00 to 13:55 Berlin, meter 1200.0 → 1207.5 kWh. The meter series
rises linearly over the session. ``price_series`` is what a ``NAME[...]`` instant query returns (a list of series,
each a list of (t, price)).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

LABELS = {"charger": "garage", "site": "home", "job": "pulsatrix", "instance": "exporter:9821"}
START, END = 1_772_362_800.0, 1_772_369_700.0  # 2026-03-01T12:00:00+01:00, 13:55
METER_START, ENERGY = 1_200.0, 7.5
J = 3.6e6


def meter_kwh(t: float) -> float:
    if t <= START:
        return METER_START
    if t >= END:
        return METER_START + ENERGY
    return METER_START + ENERGY * (t - START) / (END - START)


@dataclass
class FakeState:
    price_series: list[list[tuple[float, float]]] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    state: FakeState

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode())
        query = form.get("query", [""])[0]
        self.state.queries.append(query)
        if self.path == "/api/v1/series":
            self._send({"status": "success", "data": [{"__name__": "x", **LABELS}]})
        elif self.path == "/api/v1/query_range":
            self._send(self._range(query, form))
        else:
            self._send(self._instant(query, float(form["time"][0])))

    def _range(self, query: str, form: dict[str, list[str]]) -> dict[str, Any]:
        if "energy_imported" in query:
            a, b, step = (float(form[k][0]) for k in ("start", "end", "step"))
            n = int((b - a) / step) + 1
            values = [[a + i * step, str(meter_kwh(a + i * step) * J)] for i in range(n)]
            return _matrix([{"metric": LABELS, "values": values}])
        t = END + 300.0
        snap = {
            "pulsatrix_session_start_timestamp_seconds": START,
            "pulsatrix_session_end_timestamp_seconds": END,
            "pulsatrix_session_meter_start_joules": METER_START * J,
            "pulsatrix_session_energy_joules": ENERGY * J,
        }
        result: list[dict[str, Any]] = [
            {"metric": {"__name__": name, **LABELS}, "values": [[t, str(v)]]} for name, v in snap.items()
        ]
        info = {**LABELS, "start_reason": "Authorized", "stop_reason": "EVDisconnected"}
        result.append({"metric": {"__name__": "pulsatrix_session_info", **info}, "values": [[t, "1"]]})
        asked = re.match(r"[a-z_]+", query.removeprefix("last_over_time("))
        return _matrix([r for r in result if asked and r["metric"]["__name__"] == asked.group(0)])

    def _instant(self, query: str, at: float) -> dict[str, Any]:
        if "energy_imported" in query and not query.startswith("last_over_time("):
            # the meter's raw samples before a bound (exporter.report.bounds): one, ten seconds before it
            sample = [[at - 10, str(meter_kwh(at - 10) * J)]]
            return _matrix([{"metric": LABELS, "values": sample}])
        if "energy_imported" in query:
            value = meter_kwh(at) * J
            return {"status": "success", "data": {"resultType": "vector", "result": [
                {"metric": LABELS, "value": [at, str(value)]}
            ]}}  # fmt: skip
        if query.startswith("price"):
            m = re.search(r"\[(\d+)s\]$", query)
            span = float(m.group(1)) if m else 0.0
            series = [
                {
                    "metric": {"__name__": "price", "zone": f"z{i}"},
                    "values": [[t, str(p)] for t, p in points if at - span < t <= at],
                }
                for i, points in enumerate(self.state.price_series)
            ]
            return _matrix([s for s in series if s["values"]])
        return {"status": "success", "data": {"resultType": "vector", "result": []}}

    def _send(self, doc: object) -> None:
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _matrix(result: list[dict[str, Any]]) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "matrix", "result": result}}


@contextmanager
def fake_prometheus(state: FakeState | None = None) -> Iterator[tuple[str, FakeState]]:
    shared = state or FakeState()
    handler = type("Handler", (_Handler,), {"state": shared})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", shared
    finally:
        server.shutdown()
        server.server_close()
