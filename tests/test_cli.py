"""The command line as a user runs it: --help, --version, the demo (the README's first command) and `simulate`."""

from __future__ import annotations

import base64
import contextlib
import errno
import http.server
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter import __version__
from exporter.cli import CONFIG_ENV, DEFAULT_PORT, NO_CONFIG_MESSAGE, build_parser, parse_listen
from exporter.config import BasicAuth, ConfigError, parse_config
from exporter.serve.bind import BindError, bind
from tests.support.cli import run
from tests.support.docs import doc_section
from tests.support.servers import free_port

OPENAPI = Path(__file__).parent / "fixtures" / "payloads" / "openapi"
README = Path(__file__).resolve().parents[1] / "README.md"


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


def test_without_a_config_it_refuses_to_start_and_says_how_to_run_the_demo() -> None:
    proc = run("--listen", "127.0.0.1:0")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == NO_CONFIG_MESSAGE + "\n"
    assert "--demo" in NO_CONFIG_MESSAGE and "--config FILE" in NO_CONFIG_MESSAGE and CONFIG_ENV in NO_CONFIG_MESSAGE
    empty_env = run("--listen", "127.0.0.1:0", env={CONFIG_ENV: ""})
    assert (empty_env.returncode, empty_env.stderr) == (2, NO_CONFIG_MESSAGE + "\n")


GOOD = "tests/fixtures/config/good.yml"


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("--check-config",), {}, NO_CONFIG_MESSAGE),
        (
            ("--config", GOOD, "--demo", "--check-config"),
            {},
            "error: --demo runs simulated chargers and takes no --config FILE; use one or the other",
        ),
        (
            ("--config", GOOD, "--demo"),
            {},
            "error: --demo runs simulated chargers and takes no --config FILE; use one or the other",
        ),
        (
            ("--demo", "--check-config"),
            {CONFIG_ENV: GOOD},
            "error: --check-config checks a config file (--config FILE); --demo has none",
        ),
        (("--config", GOOD, "--demo-chargers", "5"), {}, "error: --demo-chargers only applies with --demo"),
        (("--config", ""), {}, "error: --config needs a file name"),
    ],
    ids=[
        "check-without-config",
        "config+demo+check",
        "config+demo",
        "demo+check",
        "demo-chargers-without-demo",
        "empty-config",
    ],
)
def test_contradicting_flags_are_a_usage_error(args: tuple[str, ...], env: dict[str, str], message: str) -> None:
    proc = run(*args, "--listen", "127.0.0.1:0", env={"OFFICE_TOKEN": "t", **env})
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_listen_parsing() -> None:
    assert parse_listen(":9821") == ("0.0.0.0", 9821)
    assert parse_listen("127.0.0.1:1") == ("127.0.0.1", 1)
    assert parse_listen("[::1]:9821") == ("::1", 9821)
    assert build_parser().parse_args([]).listen == ("0.0.0.0", DEFAULT_PORT)


def fetch(url: str, headers: dict[str, str] | None = None) -> str:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        return str(response.read().decode())


@contextlib.contextmanager
def process(
    *args: str, ready_path: str, port: int, env: dict[str, str] | None = None, headers: dict[str, str] | None = None
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
                fetch(f"http://127.0.0.1:{port}{ready_path}", headers)
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


@pytest.mark.parametrize("env", [{}, {CONFIG_ENV: "/nonexistent/config.yml"}], ids=["plain", "config-env-set"])
def test_demo_shows_live_changing_metrics_labelled_simulated(env: dict[str, str]) -> None:
    """The README's first command; the container image sets $PULSATRIX_EXPORTER_CONFIG and `--demo` overrides it."""
    port = free_port()
    with process("--demo", "--listen", f"127.0.0.1:{port}", ready_path="/-/ready", port=port, env=env) as proc:
        first = fetch(f"http://127.0.0.1:{port}/metrics")
        time.sleep(1.1)
        second = fetch(f"http://127.0.0.1:{port}/metrics")
        page = fetch(f"http://127.0.0.1:{port}/")
    for name in ("garage", "carport", "visitor-bay"):
        assert f'pulsatrix_up{{charger="{name}",simulated="true",site=' in first
        assert name in page
    assert 'pulsatrix_up{charger="garage",simulated="true",site="home"} 1.0' in first
    charger_series = [line for line in first.splitlines() if 'charger="' in line and not line.startswith("#")]
    assert len(charger_series) > 50
    assert all('simulated="true"' in line for line in charger_series), "every simulated series says so"

    def voltage(text: str) -> str:
        return next(line for line in text.splitlines() if line.startswith('pulsatrix_voltage_volts{charger="garage"'))

    assert voltage(first) != voltage(second), "demo values move between scrapes"
    _, err = proc.communicate(timeout=5)
    assert "WARNING exporter: DEMO MODE: exporting 3 simulated charger(s)" in err
    assert proc.returncode in (0, -15)


def test_a_configured_charger_cannot_claim_to_be_simulated() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config('chargers: [{name: a, url: "http://192.0.2.1", labels: {simulated: "false"}}]')
    assert info.value.problems == [
        "chargers[0] (a): labels.simulated: 'simulated' is used by the exporter itself; choose another label name"
    ]


def test_simulate_command_with_bearer_auth_on_every_route() -> None:
    port = free_port()
    env = {"SIM_TOKEN": "sekret"}
    auth = {"Authorization": "Bearer sekret"}
    with process(
        "simulate", "--chargers", "2", "--listen", f"127.0.0.1:{port}", "--bearer", "SIM_TOKEN", "--faults",
        ready_path="/_sim", port=port, env=env, headers=auth,
    ) as proc:  # fmt: skip
        assert '"name": "carport"' in fetch(f"http://127.0.0.1:{port}/_sim", auth)
        assert '"state"' in fetch(f"http://127.0.0.1:{port}/carport/api/v1/transaction", auth)
        for path in ("/carport/api/v1/transaction", "/_sim"):
            with pytest.raises(urllib.error.HTTPError) as info:
                fetch(f"http://127.0.0.1:{port}{path}")
            assert info.value.code == 401, path
    out, err = proc.communicate(timeout=5)
    url = f"http://127.0.0.1:{port}"
    assert out.startswith(f"# simulate: 2 charger(s) listening on {url} (device API at {url}/<name>/api/v1/...)\n")
    garage = f"  - name: garage\n    url: {url}/garage\n    auth:\n      bearer:\n        token: \"${{SIM_TOKEN}}\"\n"
    assert garage in out
    assert "sekret" not in out + err


def test_simulate_without_faults_serves_no_fault_routes() -> None:
    port = free_port()
    with process("simulate", "--listen", f"127.0.0.1:{port}", ready_path="/garage/api/v1/charging", port=port):
        with pytest.raises(urllib.error.HTTPError) as info:
            fetch(f"http://127.0.0.1:{port}/_sim")
        assert info.value.code == 404


def test_simulate_prints_ipv6_urls_in_brackets() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "simulate", "--chargers", "1", "--listen", f"[::1]:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin")},
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
        assert lines[1:] == ["chargers:\n", "  - name: garage\n", f"    url: http://[::1]:{port}/garage\n"]
        assert lines[0].startswith(f"# simulate: 1 charger(s) listening on http://[::1]:{port} ")
        deadline = time.monotonic() + 20
        while True:  # the printed URL is one a client can use
            try:
                assert '"voltage"' in fetch(f"http://[::1]:{port}/garage/api/v1/charging")
                break
            except urllib.error.URLError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def readme_simulator_example() -> tuple[list[str], str]:
    """The simulator page's command (its argv after the program) and the config it says the command prints."""
    section = doc_section("Simulator")
    command = section.split("```sh\n", 1)[1].split("\n```", 1)[0]
    printed = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    env, program, *argv = command.split()
    assert env == "SIM_PASSWORD=change-me" and program == "pulsatrix-exporter", command  # the one spelling
    return argv, printed


def test_the_readmes_simulator_config_is_what_simulate_prints_and_loads_with_its_auth() -> None:
    argv, printed = readme_simulator_example()
    port = free_port()
    argv = [arg.replace("127.0.0.1:8080", f"127.0.0.1:{port}") for arg in argv]
    env = {"SIM_PASSWORD": "change-me"}
    auth = {"Authorization": "Basic " + base64.b64encode(b"exporter:change-me").decode()}
    with process(*argv, ready_path="/garage/api/v1/charging", port=port, env=env, headers=auth) as proc:
        config = parse_config(printed.replace(":8080", f":{port}"), env=env)  # pasted into a config file, as is
        assert [c.name for c in config.chargers] == ["garage", "carport"]
        for charger in config.chargers:  # the auth the simulator serves with
            assert isinstance(charger.auth, BasicAuth)
            token = base64.b64encode(f"{charger.auth.username}:{charger.auth.password.reveal()}".encode()).decode()
            assert '"voltage"' in fetch(f"{charger.url}/api/v1/charging", {"Authorization": f"Basic {token}"})
    out, err = proc.communicate(timeout=5)
    assert out == printed.replace(":8080", f":{port}")
    assert "change-me" not in out + err


class SlowCharger(http.server.ThreadingHTTPServer):
    """A charger on loopback that takes `delay` seconds per reply and says when a request has arrived."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.request_seen = threading.Event()
        super().__init__(("127.0.0.1", 0), _SlowHandler)


class _SlowHandler(http.server.BaseHTTPRequestHandler):
    server: SlowCharger

    def do_GET(self) -> None:
        self.server.request_seen.set()
        time.sleep(self.server.delay)
        body = (OPENAPI / f"{self.path.rsplit('/', 1)[-1]}.json").read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_sigterm_finishes_the_scrape_in_flight_and_exits_0(tmp_path: Path) -> None:
    charger = SlowCharger(delay=1.5)
    threading.Thread(target=charger.serve_forever, daemon=True).start()
    try:
        config = tmp_path / "slow.yml"
        config.write_text(f"chargers:\n  - name: slow\n    url: http://127.0.0.1:{charger.server_port}\n")
        port = free_port()
        result: dict[str, str] = {}

        def scrape() -> None:
            result["body"] = fetch(f"http://127.0.0.1:{port}/probe?target=slow")

        args = ("--config", str(config), "--listen", f"127.0.0.1:{port}")
        with process(*args, ready_path="/-/ready", port=port) as proc:
            scraper = threading.Thread(target=scrape)
            scraper.start()
            assert charger.request_seen.wait(timeout=10), "the scrape reached the charger"
            proc.send_signal(signal.SIGTERM)
            scraper.join(timeout=20)
            # Within the shutdown timeout: the charger's 5 s deadline + 2 s.
            assert proc.wait(timeout=5 + 2 + 5) == 0
            _, err = proc.communicate(timeout=5)
        assert 'pulsatrix_up{charger="slow"} 1.0' in result["body"], "the scrape in flight completed with its data"
        assert "Traceback" not in err
        assert "INFO exporter: stopped" in err
    finally:
        charger.shutdown()
        charger.server_close()


@contextlib.contextmanager
def held_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port another process (here: the test) listens on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        sock.listen()
        yield sock.getsockname()[1]


IN_USE = "address already in use: another process listens on this port"


@pytest.mark.parametrize(
    ("args", "prog", "hint"),
    [
        (("--demo",), "pulsatrix-exporter", "a --demo left running?"),
        (("simulate",), "pulsatrix-exporter simulate", "is another simulator still running on it?"),
    ],
    ids=["demo", "simulate"],
)
def test_a_port_in_use_is_one_line_naming_address_and_cause_and_exit_1(
    args: tuple[str, ...], prog: str, hint: str
) -> None:
    """The hint fits the command that failed."""
    with held_port() as port:
        result = run(*args, "--listen", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stderr == f"{prog}: cannot listen on 127.0.0.1:{port}: {IN_USE} ({hint})\n"
    assert result.stdout == ""  # the simulator prints its config snippet only once it listens


def test_a_port_in_use_with_a_config_file_and_on_ipv6(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    config.write_text("chargers:\n  - name: garage\n    url: http://127.0.0.1:9\n")
    with held_port("::1") as port:
        result = run("--config", str(config), "--listen", f"[::1]:{port}")
    hint = "is another pulsatrix-exporter still running on it?"  # not the demo's hint: this one runs a config
    assert result.returncode == 1
    assert result.stderr == f"pulsatrix-exporter: cannot listen on [::1]:{port}: {IN_USE} ({hint})\n"


@pytest.mark.parametrize(
    ("listen", "cause"),
    [
        ("no-such-host.invalid:9821", "cannot resolve the host name: Name or service not known"),
        ("192.0.2.1:9821", "address not available: no interface of this host has it"),  # TEST-NET-1, never local
    ],
)
def test_an_address_that_cannot_be_bound_is_one_line_and_exit_1(listen: str, cause: str) -> None:
    for args, prog in ((("--demo",), "pulsatrix-exporter"), (("simulate",), "pulsatrix-exporter simulate")):
        result = run(*args, "--listen", listen)
        assert (result.returncode, result.stderr) == (1, f"{prog}: cannot listen on {listen}: {cause}\n")


def test_permission_denied_names_the_address_and_what_allows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # The tests run as root, which may bind port 80; the refusal an unprivileged user gets is simulated.
    def refuse(self: socket.socket, address: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(socket.socket, "bind", refuse)
    with pytest.raises(BindError) as info:
        bind("127.0.0.1", 80)
    assert str(info.value) == (
        "cannot listen on 127.0.0.1:80: permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE"
    )


@pytest.mark.parametrize(("host", "shown"), [("127.0.0.1", "127.0.0.1"), ("[::1]", "[::1]")])
def test_listening_is_logged_after_the_bind_with_the_port_bound(host: str, shown: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "--demo", "--listen", f"{host}:0"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin")},
    )
    watchdog = threading.Timer(30, proc.kill)  # a line that never comes fails the test instead of hanging it
    watchdog.start()
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        listening = rf"INFO exporter: pulsatrix-exporter \S+ listening on http://{re.escape(shown)}:(\d+) \(at most "
        match = re.search(listening, line)
        assert match, line
        port = int(match.group(1))
        assert port != 0
        deadline = time.monotonic() + 20
        while True:  # the logged address is the one that answers
            try:
                assert fetch(f"http://{shown}:{port}/-/healthy") == "Healthy.\n"
                break
            except urllib.error.URLError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
    finally:
        watchdog.cancel()
        proc.terminate()
        proc.communicate(timeout=15)


def test_simulate_on_port_0_says_where_it_listens_and_prints_that_port() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "simulate", "--chargers", "1", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin")},
    )
    watchdog = threading.Timer(30, proc.kill)  # a line that never comes fails the test instead of hanging it
    watchdog.start()
    try:
        assert proc.stdout is not None and proc.stderr is not None
        match = re.search(r"simulate: listening on http://127\.0\.0\.1:(\d+)$", proc.stderr.readline())
        assert match
        port = int(match.group(1))
        lines = [proc.stdout.readline() for _ in range(4)]
        assert lines[0].startswith(f"# simulate: 1 charger(s) listening on http://127.0.0.1:{port} ")
        assert lines[1:] == ["chargers:\n", "  - name: garage\n", f"    url: http://127.0.0.1:{port}/garage\n"]
    finally:
        watchdog.cancel()
        proc.terminate()
        proc.communicate(timeout=10)


def test_check_config_does_not_load_the_http_stack(tmp_path: Path) -> None:
    """--check-config prints the summary without importing aiohttp (~0.2 s of its ~1.5 s budget for 10,000
    chargers): a CI job or a pre-reload check pays only for reading the file."""
    config = tmp_path / "c.yml"
    config.write_text("chargers:\n  - name: bay-1\n    url: http://127.0.0.1:9/\n")
    probe = (
        "import sys; from exporter.cli import main; code = main(['--config', sys.argv[1], '--check-config']); "
        "print('aiohttp loaded' if 'aiohttp' in sys.modules else 'aiohttp not loaded', code)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(config)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.splitlines()[-1] == "aiohttp not loaded 0", done.stdout + done.stderr


@pytest.mark.parametrize(
    ("args", "env", "loop", "line"),
    [
        ((), {}, "uvloop", "INFO exporter: event loop: uvloop "),
        (("--event-loop", "asyncio"), {}, "asyncio", "INFO exporter: event loop: asyncio 3."),
        ((), {"PULSATRIX_EVENT_LOOP": "asyncio"}, "asyncio", "INFO exporter: event loop: asyncio 3."),
    ],
    ids=["default", "flag", "env"],
)
def test_the_exporter_says_which_event_loop_it_runs_on(
    args: tuple[str, ...], env: dict[str, str], loop: str, line: str
) -> None:
    """uvloop by default (it is a dependency where it builds, as here), the standard loop when asked; the start-up
    log and the build-info metric say which."""
    pytest.importorskip("uvloop", reason="uvloop is a dependency on this platform")
    port = free_port()
    with process("--demo", "--listen", f"127.0.0.1:{port}", *args, ready_path="/-/ready", port=port, env=env) as proc:
        own = fetch(f"http://127.0.0.1:{port}/-/metrics")
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    build_info = next(sample for sample in own.splitlines() if sample.startswith("pulsatrix_exporter_build_info"))
    assert f'event_loop="{loop}"' in build_info
    assert line in err
    assert (" (as asked)" in err) == (loop == "asyncio")


def test_an_unknown_event_loop_is_a_usage_error() -> None:
    proc = run("--demo", "--event-loop", "trio")
    assert proc.returncode == 2
    assert proc.stderr.endswith("error: unknown event loop 'trio': choose one of auto, uvloop, asyncio\n")
    proc = run("--demo", env={"PULSATRIX_EVENT_LOOP": "tokio"})
    assert proc.returncode == 2
    assert "error: unknown event loop 'tokio'" in proc.stderr
