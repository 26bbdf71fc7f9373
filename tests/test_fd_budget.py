"""The scrape always gets through: idle connections to the exporter's port cannot use up its file descriptors
(exporter/serve/server.py). Real processes on loopback, the exporter under a 1,024-fd limit as in many containers."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import inspect
import logging
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.fleet import ServerFactory
from tests.support.samples import get, parse
from tests.support.servers import run_exporter, run_simulator, simulator_names, write_config_for

FD_LIMIT = 1024
CHARGERS = 100


def limit_fds() -> None:
    """In the child, before exec: soft and hard 1,024 (the exporter cannot raise it past the hard limit)."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def accept_queue(port: int) -> int:
    """Connections to the loopback listener on ``port`` that it has not accepted yet (/proc/net/tcp: a listening
    socket's rx_queue is its accept queue)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A":  # 127.0.0.1, LISTEN
            return int(fields[4].split(":")[1], 16)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def wait_until(what: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not after {timeout:.0f} s"
        time.sleep(0.05)


@contextlib.contextmanager
def idle_connections(port: int, n: int) -> Iterator[list[socket.socket]]:
    """``n`` TCP connections to ``port`` that never send a byte."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(n):
            sockets.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def metrics_over(connection: http.client.HTTPConnection) -> str:
    connection.request("GET", "/metrics")
    response = connection.getresponse()
    assert response.status == 200
    return response.read().decode()


def test_700_idle_connections_cannot_keep_healthy_chargers_down(tmp_path: Path) -> None:
    with run_simulator(tmp_path / "sim", chargers=CHARGERS) as simulator:
        config = write_config_for(simulator, tmp_path / "pulsatrix.yml", timeout=5.0)
        names = simulator_names(simulator)
        with run_exporter(config, tmp_path / "exporter", preexec_fn=limit_fds) as exporter:
            with idle_connections(exporter.port, 700):
                wait_until("the exporter took every connection", lambda: accept_queue(exporter.port) == 0)
                for _ in range(3):
                    connection = http.client.HTTPConnection("127.0.0.1", exporter.port, timeout=20)
                    samples = parse(metrics_over(connection))
                    connection.close()
                    up = [get(samples, "pulsatrix_up", charger=name) for name in names]
                    assert up == [1.0] * CHARGERS
                    assert not [key for key in samples if key[0] == "pulsatrix_scrape_errors_total"]
            log = exporter.log.read_text()
    assert "at most 256 connections; fd limit 1024" in log
    assert "Traceback" not in log and "Too many open files" not in log


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_out_of_fds_anyway_is_the_exporters_reason_and_one_log_line(tmp_path: Path, loop: str) -> None:
    """A cap set above what the fd limit allows: the chargers say exporter_fds (never connect), the failed
    accept() calls are at most one log line, not a traceback each, and the port serves again once descriptors are
    free. On the standard loop asyncio reports each failed accept() (one line a minute, with a count); uvloop's
    libuv accepts and closes the excess connections itself with a descriptor it keeps in reserve, and reports
    nothing."""
    if loop == "uvloop":
        pytest.importorskip("uvloop", reason="uvloop is a dependency on this platform")
    with run_simulator(tmp_path / "sim", chargers=CHARGERS) as simulator:
        config = write_config_for(simulator, tmp_path / "pulsatrix.yml", timeout=5.0)
        names = simulator_names(simulator)
        args = ["--web.max-connections=5000", f"--event-loop={loop}"]
        with run_exporter(config, tmp_path / "exporter", extra_args=args, preexec_fn=limit_fds) as exporter:
            scraper = http.client.HTTPConnection("127.0.0.1", exporter.port, timeout=20)
            scraper.request("GET", "/-/healthy")  # connected before the descriptors run out
            scraper.getresponse().read()
            with idle_connections(exporter.port, 1100):
                time.sleep(2.0)  # asyncio retries a failed accept() every second
                samples = parse(metrics_over(scraper))
            scraper.close()
            again = http.client.HTTPConnection("127.0.0.1", exporter.port, timeout=20)  # a new connection
            after = parse(metrics_over(again))
            again.close()
            log = exporter.log.read_text()
    reasons = {dict(labels)["reason"] for name, labels in samples if name == "pulsatrix_scrape_errors_total"}
    assert reasons == {"exporter_fds"}
    assert get(samples, "pulsatrix_up", charger=names[0]) == 0.0
    assert [get(after, "pulsatrix_up", charger=name) for name in names] == [1.0] * CHARGERS
    assert f"event loop: {loop} " in log
    assert "fd limit 1024 is below the 5464 this exporter may need" in log
    accept_lines = log.count("cannot accept connections on the exporter's port: Too many open files")
    assert accept_lines == (1 if loop == "asyncio" else 0)
    assert log.count("the exporter is out of file descriptors: ") == 1, "once a minute, not once per charger"
    assert "failing:" not in log, "not one line per charger"
    assert "Traceback" not in log and "connect on" not in log


def test_the_soft_fd_limit_is_raised_to_the_hard_limit_at_start() -> None:
    def soft_512() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, FD_LIMIT))

    code = "from exporter.serve.server import raise_fd_limit; import resource; raise_fd_limit(); "
    code += "print(*resource.getrlimit(resource.RLIMIT_NOFILE))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=soft_512,
    )
    assert out.stdout.split() == ["1024", "1024"]


def test_a_refused_setrlimit_is_fine_and_no_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """As under the shipped systemd unit (SystemCallFilter=~@resources, SystemCallErrorNumber=EPERM)."""
    from exporter.serve.server import raise_fd_limit

    def refused(*_: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 65536))
    monkeypatch.setattr(resource, "setrlimit", refused)
    caplog.set_level(logging.DEBUG, logger="exporter")
    assert raise_fd_limit() == 1024
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]


async def test_at_the_cap_idle_connections_make_room_and_busy_ones_never_do(aiohttp_server: ServerFactory) -> None:
    from aiohttp import web

    from exporter.serve.server import ConnectionCap

    release = asyncio.Event()

    async def slow(_: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="done\n")

    app = web.Application()
    app.router.add_get("/slow", slow)
    server = await aiohttp_server(app)
    assert server.runner is not None and server.runner.server is not None
    cap = ConnectionCap(3)
    cap.install(server.runner.server)
    busy = await asyncio.open_connection("127.0.0.1", server.port)
    busy[1].write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(5)]
    for _ in range(100):  # bounded: until the server has seen all six connections
        await asyncio.sleep(0.01)
        if cap.closed_idle == 3:
            break
    assert (cap.closed_idle, cap.refused) == (3, 0)  # the 4th, 5th and 6th each closed the oldest idle one
    release.set()
    assert await busy[0].readline() == b"HTTP/1.1 200 OK\r\n"  # the request in progress was never closed
    assert [await reader.read() for reader, _ in idle[:3]] == [b""] * 3  # closed: the oldest idle ones
    for _, writer in [busy, *idle]:
        writer.close()


# server.run() in a process of its own (it installs signal handlers and its own loop: the exporter's, uvloop where it
# is installed), serving on a port of its choosing, with the keep-alive given on the command line; it prints the port
# once it listens.
SERVE_WITH_KEEPALIVE = """
import os, sys
from aiohttp import web
from exporter.eventloop import ENV, choose
from exporter.serve.bind import bind
from exporter.serve.server import run

async def make_app() -> web.Application:
    return web.Application()

sockets = bind("127.0.0.1", 0)
port = sockets[0].getsockname()[1]
run(make_app(), sockets, ssl_context=None, shutdown_timeout=1.0, max_connections=16, fd_limit=1024,
    on_listening=lambda: print(port, flush=True), new_loop=choose(os.environ.get(ENV) or "auto").new_loop,
    keepalive_timeout=float(sys.argv[1]))
"""


def test_the_exporter_keeps_idle_clients_30_seconds() -> None:
    """The shipped keep-alive (aiohttp's own is 75 s): what the exporter's run() uses unless told otherwise, as the
    command line never does. How it closes clients is proven with a shorter one below."""
    from exporter.serve.server import KEEPALIVE_TIMEOUT, run

    assert KEEPALIVE_TIMEOUT == 30.0
    assert inspect.signature(run).parameters["keepalive_timeout"].default == KEEPALIVE_TIMEOUT


def test_idle_and_slow_clients_are_closed_after_the_keepalive() -> None:
    """Before its first request, or sending its headers a byte at a time: closed after the keep-alive, which the
    bytes trickling in do not extend. 2 s here instead of the exporter's 30 s."""
    keepalive = 2.0
    with subprocess.Popen(
        [sys.executable, "-c", SERVE_WITH_KEEPALIVE, str(keepalive)], stdout=subprocess.PIPE, text=True
    ) as server:
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            started = time.monotonic()
            silent = socket.create_connection(("127.0.0.1", port), timeout=keepalive + 15)
            slow = socket.create_connection(("127.0.0.1", port), timeout=keepalive + 15)
            for byte in b"GET /metrics HTTP/1.1\r\nHost: x"[:16]:  # never a complete request
                slow.sendall(bytes([byte]))
                time.sleep(keepalive / 32)  # for half the keep-alive: slower than any real client
            assert slow.recv(1) == b""  # closed by the server (a timeout would raise instead)
            slow_closed = time.monotonic() - started
            assert silent.recv(1) == b""
            silent_closed = time.monotonic() - started
            silent.close()
            slow.close()
        finally:
            server.terminate()
    assert keepalive - 0.2 < slow_closed < keepalive + 3, slow_closed
    assert keepalive - 0.2 < silent_closed < keepalive + 3, silent_closed
