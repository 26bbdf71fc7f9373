"""Real Prometheus / Alertmanager processes for end-to-end tests, on loopback, in temporary directories.

Binaries come from Debian's ``prometheus`` and ``prometheus-alertmanager`` packages (``.ci/run`` installs them).
Without them the e2e tests are skipped on a developer machine, but fail when ``PULSATRIX_REQUIRE_E2E=1`` is set
(as ``.ci/run`` does), so that CI can never pass by skipping them.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

REQUIRE_ENV = "PULSATRIX_REQUIRE_E2E"


def find_binary(*names: str, package: str = "prometheus, prometheus-alertmanager") -> str:
    """Path of the first of ``names`` on PATH; skip the test (or fail, under PULSATRIX_REQUIRE_E2E=1) if none.
    ``package``: the Debian package(s) that install it, for the message."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    message = f"{' or '.join(names)} not installed (Debian package {package})"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{message}, but {REQUIRE_ENV}=1")
    pytest.skip(message)


# free_port() hands out ports below Linux's ephemeral range (32768-60999), in a slice of its own for each pytest-xdist
# worker (PYTEST_XDIST_WORKER=gw0, gw1, ...): the kernel never gives these to an outgoing connection, and two workers
# never pick the same one, so a port cannot be taken between free_port() and the server binding it.
PORTS_BASE, PORTS_PER_WORKER = 20000, 1000
_ports = itertools.count(random.randrange(PORTS_PER_WORKER))  # noqa: S311 - a starting point, not a secret


def worker_ports() -> range:
    """This process' slice of ports (see PORTS_BASE)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    first = PORTS_BASE + PORTS_PER_WORKER * (int(worker) if worker.isdigit() else 0)
    return range(first, first + PORTS_PER_WORKER)


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False  # in use, or still in TIME_WAIT
        return True


def free_port() -> int:
    """A loopback port that is free now, from this process' own slice (see PORTS_BASE)."""
    ports = worker_ports()
    for _ in ports:
        port = ports[next(_ports) % len(ports)]
        if port_is_free(port):
            return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")


def http_get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback test servers only
        return json.loads(response.read())


def http_get_text(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback test servers only
        return str(response.read().decode("utf-8"))


def rfc3339_unix(stamp: str) -> float:
    """Prometheus' RFC 3339 time (nanoseconds, ``Z``) as Unix time."""
    match = re.fullmatch(r"([^.]+?)(\.\d+)?(Z|[+-]\d\d:\d\d)", stamp)
    assert match, f"not an RFC 3339 time: {stamp!r}"
    zone = "+00:00" if match[3] == "Z" else match[3]
    return datetime.fromisoformat(match[1] + zone).timestamp() + float(match[2] or 0)


def wait_until_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError, urllib.error.URLError), urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310
            if response.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout}s:\n{log.read_text()[-3000:]}")


class Server:
    """A started server process; ``stop()`` ends it (also called by the context managers below)."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], port: int, workdir: Path, log: Path) -> None:
        self.name = name
        self.proc = proc
        self.port = port
        self.workdir = workdir
        self.log = log
        self.url = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return http_get_json(f"{self.url}{path}{query}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


class Prometheus(Server):
    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        answer = self.get("/api/v1/query", **params)
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        answer = self.get("/api/v1/query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step:g}")
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def targets(self) -> list[dict[str, Any]]:
        active: list[dict[str, Any]] = self.get("/api/v1/targets")["data"]["activeTargets"]
        return active

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = self.get("/api/v1/alerts")["data"]["alerts"]
        return alerts

    def last_evaluations(self, alerts: Collection[str] = ()) -> dict[str, float]:
        """Unix time of each rule group's last evaluation, by group name: of the groups holding one of ``alerts``,
        or without them of every group evaluated at the shortest interval (the hourly ones are left out)."""
        groups = self.get("/api/v1/rules")["data"]["groups"]
        if alerts:
            groups = [g for g in groups if any(r.get("name") in alerts for r in g["rules"])]
            assert groups, f"no rule group holds {sorted(alerts)}"
        else:
            shortest = min(g["interval"] for g in groups)
            groups = [g for g in groups if g["interval"] == shortest]
        return {f"{g['file']}:{g['name']}": rfc3339_unix(g["lastEvaluation"]) for g in groups}

    def wait_for_evaluation_after(self, moment: float, alerts: Collection[str] = (), timeout: float = 60.0) -> None:
        """Until the rule groups (see :meth:`last_evaluations`) have each been evaluated after ``moment`` (Unix
        time): what their rules make of the data Prometheus had by then is in its alerts, and on its way to
        Alertmanager. This is how a test waits for "a few more evaluations" instead of sleeping."""
        deadline = time.monotonic() + timeout
        while min((last := self.last_evaluations(alerts)).values()) <= moment:
            if time.monotonic() > deadline:
                raise AssertionError(f"rule groups not evaluated after {moment:.3f} within {timeout}s: {last}")
            time.sleep(0.1)

    def wait_for(self, expr: str, timeout: float = 60.0, interval: float = 0.5) -> list[dict[str, Any]]:
        """Poll ``expr`` until it returns at least one series; fail with the expression otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"no result for {expr!r} after {timeout}s")
            time.sleep(interval)


S = TypeVar("S", bound=Server)


@contextlib.contextmanager
def _serve(
    cls: type[S],
    name: str,
    command: Sequence[str],
    workdir: Path,
    port: int,
    ready_path: str,
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[S]:
    """Start ``command`` (which listens on ``port``), wait for ``ready_path`` to answer 200, stop it afterwards.
    ``preexec_fn`` runs in the child before it starts (e.g. to set a resource limit)."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    with log.open("wb") as log_file:
        # preexec_fn only sets a resource limit (safe enough here: it takes no lock a thread may hold)
        proc = subprocess.Popen(
            list(command),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            preexec_fn=preexec_fn,  # noqa: PLW1509
        )
    server = cls(name, proc, port, workdir, log)
    try:
        wait_until_ready(f"{server.url}{ready_path}", proc, log)
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def run_prometheus(
    config: dict[str, Any] | str, workdir: Path, rule_files: Sequence[Path] = (), extra_args: Sequence[str] = ()
) -> Iterator[Prometheus]:
    """Start Prometheus with ``config`` (a dict or YAML text) on a free loopback port; stop it afterwards.

    ``rule_files`` are copied into ``workdir`` and referenced from the config's ``rule_files``.
    """
    import yaml

    binary = find_binary("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load(config) if isinstance(config, str) else dict(config)
    if rule_files:
        copied = []
        for rule_file in rule_files:
            target = workdir / rule_file.name
            shutil.copyfile(rule_file, target)
            copied.append(str(target))
        cfg["rule_files"] = copied
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    port = free_port()
    command = [
        binary,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
        *extra_args,
    ]
    with _serve(Prometheus, "prometheus", command, workdir, port, "/-/ready") as server:
        yield server


@contextlib.contextmanager
def run_alertmanager(config: dict[str, Any] | str, workdir: Path) -> Iterator[Server]:
    """Start Alertmanager with ``config`` on a free loopback port (clustering off); stop it afterwards."""
    import yaml

    binary = find_binary("prometheus-alertmanager", "alertmanager")
    workdir.mkdir(parents=True, exist_ok=True)
    text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
    config_path = workdir / "alertmanager.yml"
    config_path.write_text(text)
    port = free_port()
    command = [
        binary,
        f"--config.file={config_path}",
        f"--storage.path={workdir / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    with _serve(Server, "alertmanager", command, workdir, port, "/-/ready") as server:
        yield server


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run promtool; the caller asserts on returncode and output."""
    binary = find_binary("promtool")
    return subprocess.run([binary, *args], capture_output=True, text=True, cwd=cwd, timeout=120, check=False)


def _exporter_command() -> list[str]:
    import sys

    return [sys.executable, "-m", "exporter"]


@contextlib.contextmanager
def run_simulator(workdir: Path, chargers: int = 3, speed: float = 1.0, seed: int = 1) -> Iterator[Server]:
    """Start ``pulsatrix-exporter simulate --faults`` as a process; faults are set with ``set_fault``."""
    port = free_port()
    command = [
        *_exporter_command(),
        "simulate",
        f"--listen=127.0.0.1:{port}",
        f"--chargers={chargers}",
        f"--speed={speed:g}",
        f"--seed={seed}",
    ]
    with _serve(Server, "simulator", [*command, "--faults"], workdir, port, "/_sim") as server:
        yield server


def simulator_names(simulator: Server) -> list[str]:
    return [c["name"] for c in simulator.get("/_sim")]


def put_json(url: str, body: Any) -> int:
    """PUT a JSON body to a loopback test server; return the status."""
    request = urllib.request.Request(  # noqa: S310 - loopback
        url, data=json.dumps(body).encode(), method="PUT", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        return int(response.status)


def set_fault(simulator: Server, charger: str, fault: str, endpoints: Sequence[str] | None = None) -> None:
    """Set a simulator fault (see exporter.simulator.FAULTS); ``none`` clears it."""
    body: dict[str, Any] = {"fault": fault}
    if endpoints is not None:
        body["endpoints"] = list(endpoints)
    assert put_json(f"{simulator.url}/_sim/{charger}", body) == 200


def write_config_for(simulator: Server, path: Path, timeout: float = 2.0, labels: dict[str, str] | None = None) -> Path:
    """Write an exporter config with every simulated charger (optional extra labels on each)."""
    import yaml

    chargers = []
    for name in simulator_names(simulator):
        charger: dict[str, Any] = {"name": name, "url": f"{simulator.url}/{name}"}
        if labels:
            charger["labels"] = dict(labels)
        chargers.append(charger)
    path.write_text(yaml.safe_dump({"timeout": timeout, "chargers": chargers}, sort_keys=False))
    return path


@contextlib.contextmanager
def run_exporter(
    config_path: Path,
    workdir: Path,
    extra_args: Sequence[str] = (),
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[Server]:
    """Start the exporter as a process with ``--config`` on a free loopback port (``preexec_fn``: see ``_serve``)."""
    port = free_port()
    command = [*_exporter_command(), f"--config={config_path}", f"--listen=127.0.0.1:{port}", *extra_args]
    with _serve(Server, "exporter", command, workdir, port, "/-/ready", preexec_fn) as server:
        yield server
