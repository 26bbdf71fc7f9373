"""Helpers of the energy-ledger e2e tests: the ledger rules at a test's pace, VictoriaMetrics on loopback, and
`pulsatrix-exporter report` run as a user runs it."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.support.servers import Server, find_binary, free_port, wait_until_ready

ROOT = Path(__file__).resolve().parents[2]
LEDGER = ROOT / "deploy" / "prometheus" / "ledger.yml"


def fast_ledger_rules(workdir: Path, interval: int = 1) -> Path:
    """ledger.yml at the test's pace: its 15 s evaluation at ``interval`` seconds, its look back of two
    evaluations (``offset 30s``) at twice that."""
    text = LEDGER.read_text(encoding="utf-8")
    text = text.replace("offset 30s", f"offset {2 * interval}s").replace("15s", f"{interval}s")
    path = workdir / "ledger.yml"
    path.write_text(text, encoding="utf-8")
    return path


@contextlib.contextmanager
def run_victoriametrics(workdir: Path, extra_args: Sequence[str] = ()) -> Iterator[Server]:
    binary = find_binary("victoria-metrics")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = workdir / "victoria-metrics.log"
    command = [
        binary,
        f"-storageDataPath={workdir / 'vm-data'}",
        f"-httpListenAddr=127.0.0.1:{port}",
        "-retentionPeriod=100y",
        "-search.latencyOffset=0s",  # answer with the newest samples (default: hide the last 30 s)
        "-search.disableCache",
        "-loggerLevel=WARN",
        *extra_args,
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    server = Server("victoria-metrics", proc, port, workdir, log)
    try:
        wait_until_ready(f"{server.url}/health", proc, log)
        yield server
    finally:
        server.stop()


def report(view: str, url: str, start: float, end: float, *extra: str) -> tuple[int, list[dict[str, Any]], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def iso(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")

    cmd = [
        sys.executable,
        "-m",
        "exporter",
        "report",
        view,
        "--prometheus",
        url,
        "--start",
        iso(start),
        "--end",
        iso(end),
        "--tz",
        "UTC",
        "--format",
        "json",
        "--lookback",
        "30",
        *extra,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)
    rows = json.loads(out.stdout) if out.returncode == 0 and out.stdout else []
    return out.returncode, rows, out.stderr


# --- A history written with past timestamps: what the exporter would have exposed, as an HA pair stored it ------

KWH = 3_600_000.0
SERIES = {
    "start": "pulsatrix_session_start_timestamp_seconds",
    "end": "pulsatrix_session_end_timestamp_seconds",
    "meter_start": "pulsatrix_session_meter_start_joules",
    "energy": "pulsatrix_session_energy_joules",
    "info": "pulsatrix_session_info",
    "meter": "pulsatrix_energy_imported_joules_total",
}


@dataclass(frozen=True)
class Plug:
    """One session as it happened (real Unix times, constant power); ``swap_to_kwh``: the meter was replaced as
    it ended, so the device's meterStop is read from the new meter at that value."""

    start: float
    end: float
    power_w: float = 11_000.0
    swap_to_kwh: float | None = None

    @property
    def kwh(self) -> float:
        return self.power_w * (self.end - self.start) / KWH


@dataclass
class Box:
    """A charger: its own labels, its meter at the first scrape, its sessions, its scraped span, its quirks."""

    name: str
    labels: dict[str, str]
    meter_kwh: float
    plugs: list[Plug]
    span: tuple[float, float]
    clock: float = 0.0  # the device's clock minus the real time
    zero_start: bool = False  # firmware that reports startedTime 0
    relabel: list[tuple[float, dict[str, str]]] = field(default_factory=list)  # from t on, these labels

    def meter_at(self, t: float) -> float:
        """The meter (kWh) at time t."""
        base = self.meter_kwh
        for p in self.plugs:
            if t < p.start:
                return base
            if t < p.end:
                return base + p.power_w * (t - p.start) / KWH
            base = p.swap_to_kwh if p.swap_to_kwh is not None else base + p.kwh
        return base

    def labels_at(self, t: float) -> dict[str, str]:
        out = {"charger": self.name, "job": "pulsatrix", "instance": "exporter:9821", **self.labels}
        for since, change in self.relabel:
            if t >= since:
                out.update(change)
        return out

    def exposition(self, t: float) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """What a scrape at t shows: {(series, labels): value}."""
        labels = self.labels_at(t)
        key = tuple(sorted(labels.items()))
        out = {("meter", key): self.meter_at(t) * KWH}
        past = [p for p in self.plugs if p.start <= t]
        if not past:
            return out
        p = past[-1]
        meter_start = self.meter_at(p.start)
        out[("start", key)] = 0.0 if self.zero_start else p.start + self.clock
        out[("meter_start", key)] = meter_start * KWH
        if t < p.end:
            out[("energy", key)] = p.power_w * (t - p.start)
            info = {**labels, "start_reason": "Authorized", "stop_reason": ""}
        else:
            out[("end", key)] = p.end + self.clock
            stop = p.swap_to_kwh if p.swap_to_kwh is not None else meter_start + p.kwh
            if stop >= meter_start:  # the exporter drops a negative meterStop - meterStart
                out[("energy", key)] = (stop - meter_start) * KWH
            info = {**labels, "start_reason": "Authorized", "stop_reason": "EVDisconnected"}
        out[("info", tuple(sorted(info.items())))] = 1.0
        return out


@dataclass(frozen=True)
class Replica:
    """One Prometheus of an HA pair: its external labels and the scrapes it missed."""

    labels: dict[str, str]
    missed: Callable[[int], bool] = lambda _: False
    phase: float = 0.0  # its scrapes this long after the other's


def history(
    boxes: Sequence[Box], replicas: Sequence[Replica], every: float, rule_gaps: Sequence[tuple[float, float]] = ()
) -> list[dict[str, Any]]:
    """VictoriaMetrics import lines (``/api/v1/import``) of every series and of the ledger rules' change series
    as each replica's rules would have recorded them (evaluated just after each scrape, looking one scrape back;
    none inside ``rule_gaps``, where the rules were not running), and the rules' heartbeat."""
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]] = {}

    def add(name: str, key: tuple[tuple[str, str], ...], t: float, v: float) -> None:
        samples.setdefault((name, key), []).append((t, v))

    for replica in replicas:
        extra = tuple(replica.labels.items())
        beats: set[float] = set()
        for box in boxes:
            a, b = box.span
            n = int((b - a) // every)
            shown: list[dict[tuple[str, tuple[tuple[str, str], ...]], float] | None] = []
            for k in range(n + 1):
                t = a + k * every + replica.phase
                if replica.missed(k):
                    shown.append(None)
                    continue
                expo = {(name, tuple(sorted((*key, *extra)))): v for (name, key), v in box.exposition(t).items()}
                shown.append(expo)
                for (name, key), v in expo.items():
                    add(SERIES[name], key, t, v)
            _record(shown, a + replica.phase, every, rule_gaps, add, beats)
        for t in sorted(beats):
            add("pulsatrix:ledger_recording", tuple(sorted(extra)), t, 1.0)
    return [
        {
            "metric": {"__name__": name, **dict(key)},
            "values": [v for _, v in points],
            "timestamps": [round(t * 1000) for t, _ in points],
        }
        for (name, key), points in samples.items()
    ]


def _record(
    shown: Sequence[dict[tuple[str, tuple[tuple[str, str], ...]], float] | None],
    a: float,
    every: float,
    gaps: Sequence[tuple[float, float]],
    add: Callable[[str, tuple[tuple[str, str], ...], float, float], None],
    beats: set[float],
) -> None:
    """The ledger rules at each evaluation (5 s after a scrape slot): what changed since the evaluation before; the
    heartbeat once a minute."""

    def state(k: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        # a missed scrape: the last one within Prometheus' 5-minute look back still answers
        for j in (k, k - 1):
            if 0 <= j < len(shown) and shown[j] is not None and (k - j) * every < 300:
                return shown[j] or {}
        return {}

    for k in range(len(shown)):
        e = a + k * every + 5
        if any(g0 <= e < g1 for g0, g1 in gaps):
            continue
        beats.update(e + i * 60 for i in range(int(every // 60)) if not any(g0 <= e + i * 60 < g1 for g0, g1 in gaps))
        now, before = state(k), state(k - 1)
        ended_now = {key for (name, key) in now if name == "end"}
        ended_before = {key for (name, key) in before if name == "end"}
        for (name, key), v in now.items():
            if name == "meter":
                continue
            if name == "info":
                if (name, key) not in before:
                    add("pulsatrix_session_info:changes", key, e, v)
            elif name == "energy":
                if key not in ended_now:
                    continue
                old = before.get((name, key))
                if key not in ended_before or (old is not None and old != v):
                    add("pulsatrix_session_energy_joules:ended_changes", key, e, v)
            elif before.get((name, key)) != v:
                add(f"{SERIES[name]}:changes", key, e, v)


def import_history(vm: Server, lines: Sequence[dict[str, Any]]) -> None:
    """Write the lines into VictoriaMetrics and wait until it answers with all of them."""
    body = "\n".join(json.dumps(line) for line in lines).encode()
    request = urllib.request.Request(f"{vm.url}/api/v1/import", data=body, method="POST")  # noqa: S310 (loopback)
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        assert response.status == 204, response.status
    with urllib.request.urlopen(f"{vm.url}/internal/force_flush", timeout=60):  # noqa: S310
        pass


def report_here(*args: str) -> tuple[int, list[dict[str, Any]], str]:
    """`pulsatrix-exporter report ARGS --format json` in this process (no interpreter start-up per run)."""
    import io

    from exporter.report.command import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*args, "--format", "json"])
    text = out.getvalue()
    return code, (json.loads(text) if code == 0 and text else []), err.getvalue()


def backfill_prometheus(lines: Sequence[dict[str, Any]], data: Path) -> None:
    """The same lines as OpenMetrics, written into Prometheus blocks in ``data`` (``promtool tsdb
    create-blocks-from openmetrics``, 31-day blocks) for a Prometheus started on that directory."""
    from tests.support.servers import promtool

    families: dict[str, list[str]] = {}
    for line in lines:
        metric = dict(line["metric"])
        name = metric.pop("__name__")
        text = ",".join(f'{k}="{_om_escape(v)}"' for k, v in sorted(metric.items()))
        out = families.setdefault(name, [])
        out += [f"{name}{{{text}}} {v} {t / 1000:.3f}" for v, t in zip(line["values"], line["timestamps"], strict=True)]
    om = data.parent / "history.om"
    om.write_text(
        "".join(f"# TYPE {name} gauge\n" + "\n".join(samples) + "\n" for name, samples in families.items()) + "# EOF\n",
        encoding="utf-8",
    )
    result = promtool("tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=744h", str(om), str(data))
    assert result.returncode == 0, result.stderr[-2000:]


def _om_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
