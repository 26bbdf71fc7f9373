"""The systemd unit and the example config it runs, against the code and the README's install commands.
"""

from __future__ import annotations

import itertools
import shlex
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import yaml

from exporter.cli import DEFAULT_PORT
from exporter.config import parse_config
from tests.support.deploy import (
    CREDENTIALS_RE,
    DEPLOY,
    ENV_REF_RE,
    compose,
    documented_fleet,
    env_file,
    exporter_pod,
    flag,
    readme_section,
    shell_commands,
    string_values,
    unit,
    url_port,
)
from tests.support.servers import find_binary


def test_systemd_unit_is_hardened() -> None:
    keys = unit()
    expected = {
        "DynamicUser": "yes",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "ProtectProc": "invisible",
        "Restart": "on-failure",
    }
    for key, value in expected.items():
        assert keys.get(key) == [value], f"{key}={value}"
    # ProcSubset=pid hides /proc/stat: prometheus_client's ProcessCollector then exports no process_* metric.
    assert "ProcSubset" not in keys
    families = set(keys["RestrictAddressFamilies"][0].split())
    assert {"AF_INET", "AF_INET6"} <= families and "AF_PACKET" not in families
    assert "@system-service" in keys["SystemCallFilter"]


def test_systemd_unit_reloads_and_has_file_descriptors_for_the_documented_fleet() -> None:
    keys = unit()
    assert keys["ExecReload"] == ["/bin/kill -HUP $MAINPID"]  # the exporter re-reads its config on SIGHUP
    (limit,) = keys["LimitNOFILE"]
    assert int(limit) >= 4 * documented_fleet() + 64  # 4 kept-alive sockets per charger plus the exporter's own
    # Raising the limit is systemd's job before the start: the hardening that forbids setrlimit() stays.
    assert keys["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]


def test_systemd_unit_runs_the_installed_exporter_with_its_config_port_and_secrets(tmp_path: Path) -> None:
    keys = unit()
    (exec_start,) = keys["ExecStart"]
    argv = shlex.split(exec_start)
    assert PurePosixPath(argv[0]).name == "pulsatrix-exporter"
    assert argv[argv.index("--config") + 1] == "/etc/pulsatrix-exporter/config.yml"
    assert url_port(argv[argv.index("--listen") + 1]) == DEFAULT_PORT
    # Optional ('-'): a missing environment file must not keep the service from starting.
    assert keys["EnvironmentFile"] == ["-/etc/pulsatrix-exporter/pulsatrix-exporter.env"]

    # A LoadCredential= whose file is missing is fatal, so the unit ships none active, only a commented example;
    # the example config's secrets are exactly what that example and the environment file provide.
    assert "LoadCredential" not in keys
    example_credentials = unit(commented=True)["LoadCredential"]
    example = (DEPLOY / "config.example.yml").read_text(encoding="utf-8")
    values = " ".join(string_values(yaml.safe_load(example)))
    credentials = {value.split(":", 1)[0] for value in example_credentials}
    assert credentials == set(CREDENTIALS_RE.findall(values))
    assert all(value.split(":", 1)[1].startswith("/etc/pulsatrix-exporter/secrets/") for value in example_credentials)
    assert set(ENV_REF_RE.findall(values)) - {"CREDENTIALS_DIRECTORY"} == set(env_file())

    for name in credentials:
        (tmp_path / name).write_text("s3cret\n", encoding="utf-8")
    env = {**env_file(), "CREDENTIALS_DIRECTORY": str(tmp_path)}
    config = parse_config(example, source="config.example.yml", env=env)
    assert [c.name for c in config.chargers] == ["garage", "depot-3-bay-12", "office"]
    assert all(c.auth is not None for c in config.chargers[1:])


def test_systemd_verifies_the_unit_with_its_example_credentials(tmp_path: Path) -> None:
    """systemd's own reading of the unit: no unknown key, no bad value. Skipped without ``systemd-analyze`` on a
    developer's machine, failing under PULSATRIX_REQUIRE_E2E=1 (as CI runs), never passing unchecked."""
    analyze = find_binary("systemd-analyze", package="systemd")
    (exec_start,) = unit()["ExecStart"]
    checked = tmp_path / "pulsatrix-exporter.service"
    text = (DEPLOY / "systemd" / "pulsatrix-exporter.service").read_text(encoding="utf-8")
    text = text.replace(shlex.split(exec_start)[0], shutil.which("true") or "/bin/true")
    # ... also with the example credentials switched on, as the README's drop-in does.
    text = text.replace("\n#LoadCredential=", "\nLoadCredential=")
    assert "\nLoadCredential=" in text
    checked.write_text(text, encoding="utf-8")
    result = subprocess.run([analyze, "verify", str(checked)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0 and "Unknown" not in result.stderr, result.stderr


def test_readme_checks_the_config_with_the_secrets_of_the_service() -> None:
    install = readme_section("Install")
    commands = shell_commands(install)

    # systemd: a throw-away unit with the service's credentials and environment file runs the unit's command.
    (run,) = [c for c in commands if "systemd-run" in c]
    properties: dict[str, list[str]] = {}
    for flag_, value in itertools.pairwise(run):
        if flag_ == "-p":
            key, _, setting = value.partition("=")
            properties.setdefault(key, []).append(setting)
    keys, examples = unit(), unit(commented=True)
    assert properties["DynamicUser"] == keys["DynamicUser"] == ["yes"]
    assert properties["EnvironmentFile"] == keys["EnvironmentFile"]
    assert properties["LoadCredential"] == examples["LoadCredential"]
    exec_start = shlex.split(keys["ExecStart"][0])
    command = run[run.index(exec_start[0]) :]
    assert command == [*exec_start[: exec_start.index("--listen")], "--check-config"]
    # ... and the drop-in of the install steps switches on the same credentials.
    drop_in = [c for c in commands if c[:2] == ["printf", "[Service]\\nLoadCredential=%s\\n"]]
    assert [c[2] for c in drop_in] == examples["LoadCredential"]

    # compose: `run` the live exporter with its mounts and env file; the argument goes to the image's entrypoint.
    live = compose()["services"]["pulsatrix-exporter"]
    assert "command" not in live and "entrypoint" not in live
    check = ["docker", "compose", "-f", "deploy/docker-compose.yml", "--profile", "live", "run", "--rm"]
    assert [*check, "pulsatrix-exporter", "--check-config"] in commands
    assert "live" in live["profiles"]

    # Kubernetes: inside a pod of the StatefulSet, with its mounted ConfigMap and Secret.
    statefulset, _, container = exporter_pod()
    name, namespace = statefulset["metadata"]["name"], statefulset["metadata"]["namespace"]
    config = flag(container["args"], "--config")
    exec_in = f"kubectl -n {namespace} exec {name}-0 -c {container['name']}"  # the pod has a sidecar too
    expected = f"{exec_in} -- pulsatrix-exporter --config {config} --check-config"
    assert expected in install
