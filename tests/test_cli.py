"""The command line as a user runs it: --help, --version, the demo (the README's first command) and `simulate`."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

from exporter import __version__
from exporter.cli import DEFAULT_PORT, build_parser, parse_listen
from tests.support.servers import free_port


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": os.environ.get("PATH", "/usr/bin"), **(env or {})},
    )


def test_help_lists_every_flag() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    for flag in ("--config", "--listen", "--check-config", "--demo", "--log-level", "--version", "simulate"):
        assert flag in proc.stdout


def test_version() -> None:
    proc = run("--version")
    assert (proc.returncode, proc.stdout) == (0, f"pulsatrix-exporter {__version__}\n")


def test_bad_flag_values_are_rejected() -> None:
    proc = run("--listen", "localhost")
    assert proc.returncode == 2
    assert "expected HOST:PORT, got 'localhost'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_check_config_without_a_config_fails() -> None:
    proc = run("--check-config")
    assert proc.returncode == 1
    assert "--check-config needs --config FILE" in proc.stderr


def test_listen_parsing() -> None:
    assert parse_listen(":9821") == ("0.0.0.0", 9821)
    assert parse_listen("127.0.0.1:1") == ("127.0.0.1", 1)
    assert parse_listen("[::1]:9821") == ("::1", 9821)
    assert build_parser().parse_args([]).listen == ("0.0.0.0", DEFAULT_PORT)


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
        return str(response.read().decode())


@contextlib.contextmanager
def process(
    *args: str, ready_path: str, port: int, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin"), **(env or {})},
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                fetch(f"http://127.0.0.1:{port}{ready_path}")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    out, err = proc.communicate(timeout=5)
                    pytest.fail(f"did not start: rc={proc.returncode}\n{out}\n{err}")
                time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)


@pytest.mark.parametrize("args", [("--demo",), ()], ids=["--demo", "no-config"])
def test_demo_shows_live_changing_metrics(args: tuple[str, ...]) -> None:
    port = free_port()
    with process(*args, "--listen", f"127.0.0.1:{port}", ready_path="/-/ready", port=port) as proc:
        first = fetch(f"http://127.0.0.1:{port}/metrics")
        time.sleep(1.1)
        second = fetch(f"http://127.0.0.1:{port}/metrics")
        page = fetch(f"http://127.0.0.1:{port}/")
    for name in ("garage", "carport", "visitor-bay"):
        assert f'pulsatrix_up{{charger="{name}",site=' in first
        assert name in page
    assert 'pulsatrix_up{charger="garage",site="home"} 1.0' in first

    def voltage(text: str) -> str:
        return next(line for line in text.splitlines() if line.startswith('pulsatrix_voltage_volts{charger="garage"'))

    assert voltage(first) != voltage(second), "demo values move between scrapes"
    _, err = proc.communicate(timeout=5)
    assert "demo mode: 3 simulated charger(s)" in err
    assert proc.returncode in (0, -15)


def test_simulate_command_with_bearer_auth() -> None:
    port = free_port()
    env = {"SIM_TOKEN": "sekret"}
    with process(
        "simulate", "--chargers", "2", "--listen", f"127.0.0.1:{port}", "--bearer", "SIM_TOKEN",
        ready_path="/_sim", port=port, env=env,
    ) as proc:  # fmt: skip
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/carport/api/v1/transaction", headers={"Authorization": "Bearer sekret"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            assert response.status == 200
        with pytest.raises(urllib.error.HTTPError) as info:
            fetch(f"http://127.0.0.1:{port}/carport/api/v1/transaction")
        assert info.value.code == 401
    out, err = proc.communicate(timeout=5)
    assert f"  - name: garage\n    url: http://127.0.0.1:{port}/garage\n" in out
    assert "sekret" not in out + err
