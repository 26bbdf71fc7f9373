"""`--web.config.file`: TLS and basic auth on the exporter's own port, with certificates made at test time."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import bcrypt
import pytest
from aiohttp.test_utils import TestServer

from exporter.config.web import WebConfig, WebConfigError, load_web_config, parse_web_config
from exporter.serve.app import create_app
from exporter.serve.auth import BasicAuthGate
from tests.support.docs import documentation
from tests.support.fleet import ServerFactory, SimulatedFleet
from tests.support.servers import free_port

PASSWORD = "correct horse battery staple"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$", 1)  # as htpasswd


def web_config_text(extra_tls: str = "") -> str:
    return (
        f"tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n{extra_tls}"
        f"basic_auth_users:\n  prometheus: '{HASH}'\n"
    )


def problems(text: str, base_dir: Path) -> list[str]:
    with pytest.raises(WebConfigError) as info:
        parse_web_config(text, source="web.yml", base_dir=base_dir)
    rendered = info.value.message()
    assert rendered.splitlines()[0].startswith("web.yml: ") and " in web config" in rendered.splitlines()[0]
    assert HASH not in rendered and PASSWORD not in rendered
    return info.value.problems


# -- loading and validation ----------------------------------------------------------------------------------------


def test_a_full_web_config_loads(pki: Path) -> None:
    text = web_config_text("  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n"
                           "  min_version: TLS13\n  max_version: TLS13\n")  # fmt: skip
    config = parse_web_config(text, source="web.yml", base_dir=pki)
    assert config.tls is not None
    assert (config.tls.cert_file, config.tls.key_file) == (str(pki / "server.pem"), str(pki / "server.key"))
    assert config.tls.client_ca_file == str(pki / "ca.pem")
    assert config.ssl_context is not None
    assert config.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert config.ssl_context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert [name for name, _ in config.users] == ["prometheus"]
    assert HASH not in repr(config)
    assert config.summary() == "web.yml: OK, TLS (min TLS13, RequireAndVerifyClientCert), basic auth for 1 user"


def test_an_empty_web_config_means_nothing_is_configured(tmp_path: Path) -> None:
    assert parse_web_config("", source="web.yml", base_dir=tmp_path) == WebConfig(source="web.yml")
    (tmp_path / "w.yml").write_text("basic_auth_users:\n  a: '" + HASH + "'\n")
    assert load_web_config(tmp_path / "w.yml").summary() == f"{tmp_path / 'w.yml'}: OK, no TLS (plain HTTP), " + (
        "basic auth for 1 user"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "tls_server_config: {cert_file: server.pem}\nbasic_auth: {}\nrate_limit: {burst: 2}\n",
            [
                "rate_limit: is an exporter-toolkit setting pulsatrix-exporter does not support",
                "basic_auth: unknown key (did you mean 'basic_auth_users'?)",
                "tls_server_config.key_file: required key is missing",
            ],
        ),
        (
            "tls_server_config: {cert: x, key: y, cert_file: server.pem, key_file: server.key}\n",
            [
                "tls_server_config.cert: is an exporter-toolkit setting pulsatrix-exporter does not support",
                "tls_server_config.key: is an exporter-toolkit setting pulsatrix-exporter does not support",
            ],
        ),
        (
            "tls_server_config: {cert_file: nope.pem, key_file: server.pem}\n",
            [
                "tls_server_config.cert_file: '{d}/nope.pem': cannot read certificate: No such file or directory",
                "tls_server_config.key_file: '{d}/server.pem' is not a PEM private key (no 'PRIVATE KEY-----' line)",
            ],
        ),
        (
            "tls_server_config: {cert_file: server.pem, key_file: client.key}\n",
            ["tls_server_config: cannot load cert_file and key_file together: KEY_VALUES_MISMATCH"],
        ),
        (
            "tls_server_config: {cert_file: server.pem, key_file: server.key, "
            "client_auth_type: RequireAnyClientCert}\n",
            [
                "tls_server_config.client_auth_type: RequireAnyClientCert does not verify client certificates; "
                "use RequireAndVerifyClientCert"
            ],
        ),
        (
            "tls_server_config: {cert_file: server.pem, key_file: server.key, "
            "client_auth_type: RequireAndVerifyClientCert}\n",
            [
                "tls_server_config.client_auth_type: RequireAndVerifyClientCert needs client_ca_file to verify "
                "client certificates"
            ],
        ),
        (
            "tls_server_config: {cert_file: server.pem, key_file: server.key, client_ca_file: ca.pem}\n",
            [
                "tls_server_config.client_ca_file: is only used with client_auth_type RequireAndVerifyClientCert or "
                "VerifyClientCertIfGiven; without one, client certificates are not checked"
            ],
        ),
        (
            "tls_server_config: {cert_file: server.pem, key_file: server.key, min_version: TLS13, "
            "max_version: TLS12}\n",
            ["tls_server_config.max_version: TLS12 is below min_version TLS13"],
        ),
        (
            "tls_server_config: {cert_file: server.pem, key_file: server.key, min_version: SSL3}\n",
            ["tls_server_config.min_version: 'SSL3' is not one of TLS10, TLS11, TLS12, TLS13"],
        ),
        (
            f"basic_auth_users:\n  alice: {PASSWORD}\n  bob: 123456\n  'c:d': '{HASH}'\n  5: '{HASH}'\n",
            [
                "basic_auth_users.alice: is not a bcrypt hash ('$2y$' or '$2b$' (or '$2a$', '$2x$'), a two-digit cost "
                "04-31, '$' and 53 characters); make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'",
                "basic_auth_users.bob: must be a bcrypt hash in quotes, got int; make one with: "
                "htpasswd -nBC 10 \"\" | tr -d ':\\n'",
                "basic_auth_users.c:d: a user name must not contain ':'",
                "basic_auth_users.5: a user name must be a non-empty string",
            ],
        ),
        ("basic_auth_users: [prometheus]\n", ["basic_auth_users: must be a mapping of user names to bcrypt hashes"]),
        (
            "tls_server_config: " + "[" * 100 + "]" * 100,
            ["line 1, column 51: invalid YAML: nested more than 32 levels deep"],
        ),
    ],
    ids=[
        "unknown-and-unsupported", "inline-cert", "unreadable-and-not-pem", "key-mismatch", "unverified-client-certs",
        "verify-without-ca", "ca-without-verify", "versions-reversed", "bad-version", "bad-users", "users-not-a-map",
        "deep",
    ],
)  # fmt: skip
def test_every_web_config_error_names_the_key(pki: Path, text: str, expected: list[str]) -> None:
    assert problems(text, pki) == [e.replace("{d}", str(pki)) for e in expected]


def test_an_encrypted_key_is_refused_instead_of_prompting(pki: Path, tmp_path: Path) -> None:
    subprocess.run(
        ["openssl", "pkey", "-in", str(pki / "server.key"), "-out", "enc.key", "-aes256", "-passout", "pass:pw"],
        cwd=tmp_path, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    text = f"tls_server_config: {{cert_file: {pki / 'server.pem'}, key_file: enc.key}}\n"
    assert problems(text, tmp_path) == [
        f"tls_server_config.key_file: '{tmp_path / 'enc.key'}' is encrypted with a passphrase, which is not supported"
    ]


# -- serving -------------------------------------------------------------------------------------------------------


def auth_header(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def secured_exporter(
    pki: Path, fleet: SimulatedFleet, aiohttp_server: ServerFactory, extra_tls: str = ""
) -> tuple[TestServer, BasicAuthGate]:
    config = parse_web_config(web_config_text(extra_tls), base_dir=pki)
    app = create_app(fleet.config())
    auth = BasicAuthGate(config.users)
    app.middlewares.append(auth.middleware)
    app.on_cleanup.append(auth.close)
    server = await aiohttp_server(app, ssl=config.ssl_context)
    return server, auth


def client_context(pki: Path, client_cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if client_cert:
        context.load_cert_chain(pki / "client.pem", pki / "client.key")
    return context


async def test_https_with_basic_auth_protects_everything_but_the_health_checks(
    pki: Path, fleet: SimulatedFleet, aiohttp_server: ServerFactory
) -> None:
    server, _ = await secured_exporter(pki, fleet, aiohttp_server)
    base = f"https://127.0.0.1:{server.port}"
    good = auth_header("prometheus", PASSWORD)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_context(pki))) as session:
        async with session.get(f"{base}/metrics", headers=good) as response:
            assert response.status == 200
            assert 'pulsatrix_up{charger="garage"} 1.0' in await response.text()
        for path in ("/metrics", "/probe?target=garage", "/-/metrics", "/sd", "/", "/no-such-page"):
            for headers in ({}, auth_header("prometheus", "wrong"), auth_header("nobody", PASSWORD),
                            {"Authorization": "Basic !!!"}, {"Authorization": "Bearer x"}):  # fmt: skip
                async with session.get(base + path, headers=headers) as response:
                    assert response.status == 401, (path, headers)
                    assert response.headers["WWW-Authenticate"] == 'Basic realm="pulsatrix-exporter", charset="UTF-8"'
                    assert PASSWORD not in await response.text()
        for path in ("/-/healthy", "/-/ready"):
            async with session.get(base + path) as response:
                assert response.status == 200, path
        async with session.get(f"{base}/probe?target=garage", headers=good) as response:
            assert response.status == 200
        async with session.get(f"{base}/metrics", headers=auth_header("prometheus", "x" * 100)) as response:
            assert response.status == 401, "longer than bcrypt's 72 bytes: refused, not a 500"


async def test_plain_http_is_not_served_on_a_tls_port(
    pki: Path, fleet: SimulatedFleet, aiohttp_server: ServerFactory
) -> None:
    server, _ = await secured_exporter(pki, fleet, aiohttp_server)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(f"http://127.0.0.1:{server.port}/-/healthy") as response:
                await response.read()


async def test_client_certificates_when_required(
    pki: Path, fleet: SimulatedFleet, aiohttp_server: ServerFactory
) -> None:
    extra = "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n"
    server, _ = await secured_exporter(pki, fleet, aiohttp_server, extra)
    url = f"https://127.0.0.1:{server.port}/-/healthy"
    with_cert = aiohttp.TCPConnector(ssl=client_context(pki, True))
    async with aiohttp.ClientSession(connector=with_cert) as session, session.get(url) as response:
        assert response.status == 200
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_context(pki))) as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(url) as response:
                await response.read()


async def test_bcrypt_runs_once_for_many_concurrent_scrapes_with_the_same_password(
    pki: Path, fleet: SimulatedFleet, aiohttp_server: ServerFactory
) -> None:
    server, auth = await secured_exporter(pki, fleet, aiohttp_server)
    base = f"https://127.0.0.1:{server.port}"
    good = auth_header("prometheus", PASSWORD)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_context(pki), limit=0)) as session:

        async def probe(name: str) -> int:
            async with session.get(f"{base}/probe?target={name}", headers=good) as response:
                return response.status

        statuses = await asyncio.gather(*(probe(fleet.names[i % 3]) for i in range(60)))
        assert statuses == [200] * 60
        assert auth.bcrypt_runs == 1, "one verification shared by concurrent requests, then cached"
        assert await probe("garage") == 200
        assert auth.bcrypt_runs == 1
        async with session.get(f"{base}/metrics", headers=auth_header("prometheus", "wrong")) as response:
            assert response.status == 401
        async with session.get(f"{base}/metrics", headers=auth_header("prometheus", "wrong")) as response:
            assert response.status == 401
        assert auth.bcrypt_runs == 2, "a refused password is remembered too (for a minute): one bcrypt run"


async def test_the_verified_cache_is_bounded() -> None:
    users = tuple((f"u{i}", parse_web_config(f"basic_auth_users: {{u{i}: '{HASH}'}}").users[0][1]) for i in range(3))
    auth = BasicAuthGate(users)
    auth.CACHE_SIZE = 2
    try:
        for name, _ in users:
            assert await auth.verify(name, PASSWORD)
        assert auth.bcrypt_runs == 3
        assert await auth.verify("u2", PASSWORD) and auth.bcrypt_runs == 3
        assert await auth.verify("u0", PASSWORD) and auth.bcrypt_runs == 4, "the oldest entry was dropped"
    finally:
        await auth.close()


# -- the command line ------------------------------------------------------------------------------------------------


def https_get(url: str, pki: Path, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback https
    try:
        with urllib.request.urlopen(request, timeout=10, context=client_context(pki)) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@contextlib.contextmanager
def secured_process(pki: Path, tmp_path: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    (tmp_path / "web.yml").write_text(
        f"tls_server_config:\n  cert_file: {pki / 'server.pem'}\n  key_file: {pki / 'server.key'}\n"
        f"basic_auth_users:\n  prometheus: '{HASH}'\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", *args, "--web.config.file", str(tmp_path / "web.yml"),
         "--listen", f"127.0.0.1:{port}", "--log-level", "debug"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin")},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if https_get(f"https://127.0.0.1:{port}/-/ready", pki)[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                out, err = proc.communicate(timeout=5)
                pytest.fail(f"did not start: rc={proc.returncode}\n{out}\n{err}")
            time.sleep(0.1)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)


def test_lifecycle_reload_needs_the_flag_and_the_same_credentials_as_metrics(pki: Path, tmp_path: Path) -> None:
    def post(port: int, headers: dict[str, str] | None = None) -> tuple[int, str]:
        request = urllib.request.Request(f"https://127.0.0.1:{port}/-/reload", data=b"", headers=headers or {})
        return https_get_request(request, pki)

    config = tmp_path / "c.yml"
    config.write_text("chargers:\n  - name: garage\n    url: http://127.0.0.1:9\n")
    with secured_process(pki, tmp_path, "--config", str(config), "--web.enable-lifecycle") as (_, port):
        assert post(port)[0] == 401
        assert post(port, auth_header("prometheus", "hunter2"))[0] == 401
        status, body = post(port, auth_header("prometheus", PASSWORD))
        assert (status, body.startswith("config reloaded: ")) == (200, True), body
    with secured_process(pki, tmp_path, "--config", str(config)) as (_, port):
        status, body = post(port, auth_header("prometheus", PASSWORD))
        assert status == 403 and body.startswith("Lifecycle API is not enabled"), body


def https_get_request(request: urllib.request.Request, pki: Path) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(request, timeout=10, context=client_context(pki)) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_cli_serves_https_with_basic_auth_and_never_logs_the_password(pki: Path, tmp_path: Path) -> None:
    with secured_process(pki, tmp_path, "--demo") as (proc, port):
        base = f"https://127.0.0.1:{port}"
        status, body = https_get(f"{base}/metrics", pki, auth_header("prometheus", PASSWORD))
        assert status == 200 and 'simulated="true"' in body
        assert https_get(f"{base}/metrics", pki, auth_header("prometheus", "hunter2"))[0] == 401
        assert https_get(f"{base}/metrics", pki)[0] == 401
        assert https_get(f"{base}/-/healthy", pki)[0] == 200
        with pytest.raises(OSError):  # plain HTTP on the same port: no answer
            urllib.request.urlopen(f"http://127.0.0.1:{port}/-/healthy", timeout=10)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert f"listening on https://127.0.0.1:{port}" in err
    for secret in (PASSWORD, HASH, HASH[7:], "hunter2"):
        assert secret not in out + err


def test_check_config_validates_the_web_config_too(pki: Path, tmp_path: Path) -> None:
    conf = Path(__file__).parent / "fixtures" / "config" / "good.yml"
    (tmp_path / "web.yml").write_text(web_config_text().replace("server.pem", str(pki / "server.pem")).replace(
        "server.key", str(pki / "server.key")))  # fmt: skip
    env = {"PATH": os.environ.get("PATH", "/usr/bin"), "OFFICE_TOKEN": "t"}

    def check(web_config: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "exporter", "--config", str(conf), "--web.config.file", str(web_config),
             "--check-config"],
            capture_output=True, text=True, timeout=60, check=False, env=env,
        )  # fmt: skip

    ok = check(tmp_path / "web.yml")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[1] == f"{tmp_path / 'web.yml'}: OK, TLS (min TLS12), basic auth for 1 user"
    (tmp_path / "bad.yml").write_text(f"basic_auth_users:\n  prometheus: {PASSWORD}\n")
    bad = check(tmp_path / "bad.yml")
    assert bad.returncode == 1
    assert bad.stderr.splitlines() == [
        f"{tmp_path / 'bad.yml'}: 1 problem in web config",
        f"  {tmp_path / 'bad.yml'}: basic_auth_users.prometheus: is not a bcrypt hash ('$2y$' or '$2b$' (or '$2a$', "
        "'$2x$'), a two-digit cost 04-31, '$' and 53 characters); make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'",
    ]
    missing = check(tmp_path / "missing.yml")
    assert missing.returncode == 1
    assert f"{tmp_path / 'missing.yml'}: cannot read web config file: No such file or directory" in missing.stderr


def test_a_bad_web_config_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "web.yml").write_text("tls_server_config: {cert_file: a.pem, key_file: a.key}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "--demo", "--web.config.file", str(tmp_path / "web.yml"),
         "--listen", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60, check=False, env={"PATH": os.environ.get("PATH", "/usr/bin")},
    )  # fmt: skip
    assert proc.returncode == 1
    assert f"{tmp_path / 'web.yml'}: 2 problems in web config" in proc.stderr
    assert "Traceback" not in proc.stderr


# -- the README's commands -----------------------------------------------------------------------------------------

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_command(start: str) -> list[str]:
    """The README's command that starts with ``start`` (in backticks or in a shell block), split as a shell does."""
    for raw in documentation().splitlines():
        line = raw.strip()
        for candidate in [line, *line.split("`")[1::2]]:
            if candidate.startswith(start):
                return shlex.split(candidate)
    raise AssertionError(f"no command starting with {start!r} in the README")


def test_the_readmes_bcrypt_command_runs_in_the_venv_and_makes_a_cost_10_hash_that_is_accepted() -> None:
    program, *argv = readme_command(".venv/bin/python -c ")
    assert program == ".venv/bin/python"
    # Run as written, by this venv's interpreter; without a terminal (a new session) getpass reads stdin.
    proc = subprocess.run(
        [sys.executable, *argv], input=PASSWORD + "\n", capture_output=True, text=True, timeout=60,
        start_new_session=True, check=False, env={"PATH": os.environ.get("PATH", "/usr/bin")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    hashed = proc.stdout.strip()
    assert hashed.startswith("$2b$10$") and len(hashed) == 60  # the cost the README states
    config = parse_web_config(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    assert [user for user, _ in config.users] == ["prometheus"]
    assert bcrypt.checkpw(PASSWORD.encode(), config.users[0][1].reveal().encode())


def test_the_readmes_openssl_command_makes_a_pair_the_web_config_serves_with(tmp_path: Path) -> None:
    argv = readme_command("openssl req ")
    proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    config = parse_web_config(
        "tls_server_config: {cert_file: server.crt, key_file: server.key}\n", source="web.yml", base_dir=tmp_path
    )
    assert config.ssl_context is not None
    # A client that trusts server.crt (as Prometheus' ca_file) connects to 127.0.0.1 and to localhost.
    client = ssl.create_default_context(cafile=str(tmp_path / "server.crt"))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        server = config.ssl_context

        def serve() -> None:
            for _ in range(2):
                conn, _ = listener.accept()
                with contextlib.suppress(OSError), server.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        for name in ("127.0.0.1", "localhost"):
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                client.wrap_socket(raw, server_hostname=name) as tls,
            ):
                assert tls.recv(2) == b"ok"
        thread.join(timeout=10)
