"""The deploy files (container, compose, systemd, Kubernetes, Prometheus, Alertmanager) against the code they run.

Docker, systemd and Kubernetes are not available to the tests, so these files are checked statically: every file
parses, and every reference in them (ports, HTTP paths, mounted files, config paths, secrets, alert rules) points at
something that exists in the repository or in the exporter. Prometheus and Alertmanager configs are checked by
promtool / amtool, and the container's health check command is run against a real exporter process.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from exporter.app import create_app
from exporter.cli import CONFIG_ENV, DEFAULT_PORT
from exporter.config import parse_config
from tests.support.servers import find_binary, free_port, promtool, wait_until_ready

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
PROMETHEUS_CONFIGS = ["prometheus.yml", "prometheus-sharded.yml"]
CREDENTIALS_RE = re.compile(r"\$\{CREDENTIALS_DIRECTORY\}/([A-Za-z0-9_.-]+)")
ENV_REF_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def app_routes() -> set[str]:
    config = parse_config("chargers: [{name: a, url: 'http://127.0.0.1:1'}]")
    app = create_app(config)
    return {route.resource.canonical for route in app.router.routes() if route.resource is not None}


def url_port(url: str) -> int | None:
    return urlsplit(url if "://" in url else f"http://{url}").port


# -- every file parses ---------------------------------------------------------------------------------------------


def data_files() -> list[Path]:
    files = [
        p
        for base in (DEPLOY, ROOT / "grafana")
        for p in sorted(base.rglob("*"))
        if p.suffix in (".yml", ".yaml", ".json") and p.is_file()
    ]
    assert files
    return files


@pytest.mark.parametrize("path", data_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_and_json_file_parses(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        assert isinstance(json.loads(text), dict | list)
    else:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
        assert documents, f"{path} has no content"
        assert all(isinstance(d, dict) for d in documents), f"{path}: every document must be a mapping"


# -- container image -----------------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    result = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in dockerfile_instructions():
        if keyword == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def healthcheck_command() -> list[str]:
    (rest,) = [rest for keyword, rest in dockerfile_instructions() if keyword == "HEALTHCHECK"]
    _, _, exec_form = rest.partition("CMD ")
    command: list[str] = json.loads(exec_form)
    return command


def test_dockerfile_builds_in_stages_and_runs_the_console_script_as_non_root() -> None:
    instructions = dockerfile_instructions()
    froms = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert len(froms) >= 2 and " AS " in froms[0].upper(), "the wheel is built in a separate stage"
    assert any(k == "COPY" and rest.startswith("--from=") for k, rest in instructions)
    final_stage = instructions[max(i for i, (k, _) in enumerate(instructions) if k == "FROM") :]

    users = [rest for keyword, rest in final_stage if keyword == "USER"]
    assert users, "the final stage sets USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0") and user.isdigit(), "a numeric non-root user (Kubernetes runAsNonRoot)"

    assert [rest for keyword, rest in final_stage if keyword == "EXPOSE"] == [str(DEFAULT_PORT)]

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    (entrypoint,) = [json.loads(rest) for keyword, rest in final_stage if keyword == "ENTRYPOINT"]
    assert entrypoint == ["pulsatrix-exporter"] and entrypoint[0] in scripts

    env = dockerfile_env()
    assert env[CONFIG_ENV] == "/etc/pulsatrix-exporter/config.yml"
    assert env["CREDENTIALS_DIRECTORY"] == "/run/secrets"

    command = " ".join(healthcheck_command())
    assert f"http://127.0.0.1:{DEFAULT_PORT}/-/healthy" in command
    assert "/-/healthy" in app_routes()


def test_dockerignore_lets_in_exactly_what_the_build_copies() -> None:
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*", "allow-list: ignore everything, then re-include the package sources"
    included = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    copied = []
    for keyword, rest in dockerfile_instructions():
        if keyword == "COPY" and not rest.startswith("--from"):
            copied += shlex.split(rest)[:-1]
    assert copied
    for source in copied:
        assert source.rstrip("/") in included, f"COPY {source} is excluded by .dockerignore"
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    assert (ROOT / "exporter" / "cli.py").is_file()


@contextlib.contextmanager
def demo_exporter(port: int, workdir: Path) -> Iterator[None]:
    log = workdir / "exporter.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", "--demo", "--demo-chargers", "1", f"--listen=127.0.0.1:{port}"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/-/ready", proc, log)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def test_container_healthcheck_passes_on_a_running_exporter_and_fails_without_one(tmp_path: Path) -> None:
    command = healthcheck_command()
    assert command[0] == "python"
    port = free_port()
    local = [sys.executable, *(arg.replace(f":{DEFAULT_PORT}/", f":{port}/") for arg in command[1:])]
    with demo_exporter(port, tmp_path):
        healthy = subprocess.run(local, capture_output=True, text=True, timeout=30, check=False)
    assert healthy.returncode == 0, healthy.stderr
    deadline = time.monotonic() + 10
    while True:  # the port is free again once the process has exited
        stopped = subprocess.run(local, capture_output=True, text=True, timeout=30, check=False)
        if stopped.returncode != 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert stopped.returncode != 0


# -- docker compose ------------------------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    data: dict[str, Any] = load(DEPLOY / "docker-compose.yml")
    return data


def services_in(profile: str | None) -> dict[str, dict[str, Any]]:
    """The services `docker compose --profile <profile> up` starts (no profile: plain `up`)."""
    return {
        name: svc
        for name, svc in compose()["services"].items()
        if not svc.get("profiles") or (profile is not None and profile in svc["profiles"])
    }


def host_names(services: dict[str, dict[str, Any]]) -> set[str]:
    names = set(services)
    for svc in services.values():
        for network in (svc.get("networks") or {}).values():
            names.update((network or {}).get("aliases", []))
    return names


def bind_mounts(svc: dict[str, Any]) -> list[tuple[str, str]]:
    mounts = []
    for volume in svc.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        if source.startswith((".", "/")):
            mounts.append((source, target))
    return mounts


def flag(args: list[str], name: str) -> str:
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"{name}=")]
    assert len(values) == 1, f"{name} in {args}"
    return values[0]


def test_compose_demo_profile_starts_the_whole_stack_with_simulated_chargers() -> None:
    demo = services_in("demo")
    assert set(demo) == {"pulsatrix-exporter-demo", "prometheus", "alertmanager", "grafana"}
    assert "--demo" in demo["pulsatrix-exporter-demo"]["command"]
    assert "pulsatrix-exporter" not in demo, "the exporter that needs a config file must stay out of the demo"
    live = services_in("live")
    assert set(live) == {"pulsatrix-exporter", "prometheus", "alertmanager", "grafana"}

    for profile in ("demo", "live"):
        services = services_in(profile)
        names = host_names(services)
        for svc in services.values():
            for published in svc.get("ports", []):
                host_port, container_port = str(published).split(":")[-2:]
                if svc.get("image", "").startswith("pulsatrix-exporter"):
                    assert int(host_port) == int(container_port) == DEFAULT_PORT
        exporters = [svc for svc in services.values() if "build" in svc]
        assert len(exporters) == 1
        build = exporters[0]["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
        # Every host name Prometheus and Grafana talk to is a service (or alias) of this profile.
        prom = load(DEPLOY / "prometheus" / "prometheus.yml")
        hosts = [sd["url"] for job in prom["scrape_configs"] for sd in job.get("http_sd_configs", [])]
        hosts += [t for job in prom["scrape_configs"] for s in job.get("static_configs", []) for t in s["targets"]]
        hosts += [
            r["replacement"]
            for job in prom["scrape_configs"]
            for r in job.get("relabel_configs", [])
            if r.get("target_label") == "__address__"
        ]
        hosts += [t for am in prom["alerting"]["alertmanagers"] for s in am["static_configs"] for t in s["targets"]]
        for datasource in (ROOT / "grafana" / "provisioning" / "datasources").glob("*.y*ml"):
            hosts += [ds["url"] for ds in load(datasource)["datasources"]]
        for host in hosts:
            name = urlsplit(host if "://" in host else f"http://{host}").hostname
            assert name == "localhost" or name in names, f"{host}: no service {name!r} in profile {profile}"


def test_compose_exporters_have_file_descriptors_for_the_documented_fleet() -> None:
    for profile in ("demo", "live"):
        for name, svc in services_in(profile).items():
            if name.startswith("pulsatrix-exporter"):
                nofile = svc["ulimits"]["nofile"]
                assert min(nofile["soft"], nofile["hard"]) >= 4 * documented_fleet() + 64, name


def test_compose_publishes_every_port_on_loopback_only() -> None:
    # Nothing in the stack asks for a password (anonymous Grafana, Prometheus with --web.enable-lifecycle,
    # Alertmanager, the exporter): opening a port to the network is the user's explicit decision.
    published = {name: svc.get("ports", []) for name, svc in compose()["services"].items()}
    assert all(published.values()), f"every service publishes its port: {published}"
    for name, ports in published.items():
        for port in ports:
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), f"{name}: {port!r} is not on loopback"
            assert len(port.split(":")) == 3, f"{name}: {port!r}"
    prom = compose()["services"]["prometheus"]
    assert "--web.enable-lifecycle" in prom["command"], "the reason for the loopback binding (update the comment)"


def test_compose_live_profile_mounts_a_secrets_directory_that_exists_and_stays_out_of_git() -> None:
    live = compose()["services"]["pulsatrix-exporter"]
    credentials_dir = dockerfile_env()["CREDENTIALS_DIRECTORY"]
    (mount,) = [v for v in live["volumes"] if isinstance(v, dict) and v["target"] == credentials_dir]
    assert mount["type"] == "bind" and mount["read_only"] is True
    # Long bind syntax refuses a missing source: ship the directory, and let compose create it if it is gone.
    assert mount["bind"]["create_host_path"] is True
    secrets = (DEPLOY / mount["source"]).resolve()
    assert secrets == DEPLOY / "secrets" and (secrets / ".gitkeep").is_file()
    # The container runs as uid 10001 and a bind mount keeps host owner and mode: the README says so.
    user = [rest for k, rest in dockerfile_instructions() if k == "USER"][-1].split(":")[0]
    install = readme_section("Install")
    assert f"sudo chown {user}:{user} deploy/secrets/*" in install
    assert f"sudo chown {user}:{user} secrets/*" in install, "the docker run example mounts secrets too"

    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")

    def ignored(path: str) -> bool:
        result = subprocess.run(
            [git, "-C", str(ROOT), "check-ignore", "-q", "--no-index", path], timeout=30, check=False
        )
        assert result.returncode in (0, 1), result
        return result.returncode == 0

    # Real secrets are never committed; the placeholder and the ignore file itself are.
    for secret in ("depot-password", "office-token", "sub/dir/key.pem", "README"):
        assert ignored(f"deploy/secrets/{secret}"), f"deploy/secrets/{secret} would be committed"
    assert not ignored("deploy/secrets/.gitkeep") and not ignored("deploy/secrets/.gitignore")
    assert not ignored("deploy/docker-compose.yml"), "the secrets rule must not reach outside deploy/secrets"


def test_compose_mounts_files_that_exist_where_the_programs_read_them() -> None:
    services = services_in("demo")
    for name, svc in services.items():
        for source, _ in bind_mounts(svc):
            assert (DEPLOY / source).exists(), f"{name}: mounts {source}, which is not in the repository"

    prom = services["prometheus"]
    prom_mounts = {target: (DEPLOY / source).resolve() for source, target in bind_mounts(prom)}
    # ${PROMETHEUS_CONFIG:-prometheus.yml}: compose's default, what `up` without the variable runs
    config_file = re.sub(r"\$\{[A-Z_]+:-([^}]+)\}", r"\1", flag(prom["command"], "--config.file"))
    assert prom_mounts[config_file] == DEPLOY / "prometheus" / "prometheus.yml"
    for rule_file in load(DEPLOY / "prometheus" / "prometheus.yml")["rule_files"]:
        assert prom_mounts[rule_file] == DEPLOY / "prometheus" / PurePosixPath(rule_file).name

    am = services["alertmanager"]
    am_mounts = {target: (DEPLOY / source).resolve() for source, target in bind_mounts(am)}
    assert am_mounts[flag(am["command"], "--config.file")] == DEPLOY / "alertmanager" / "alertmanager.yml"

    grafana_mounts = {(DEPLOY / source).resolve(): target for source, target in bind_mounts(services["grafana"])}
    assert grafana_mounts[ROOT / "grafana" / "provisioning"] == "/etc/grafana/provisioning"
    dashboards_target = PurePosixPath(grafana_mounts[ROOT / "grafana" / "dashboards"])
    providers = [
        p for f in (ROOT / "grafana" / "provisioning" / "dashboards").glob("*.y*ml") for p in load(f)["providers"]
    ]
    assert providers, "grafana/provisioning/dashboards has no provider"
    for provider in providers:
        assert PurePosixPath(provider["options"]["path"]) == dashboards_target, "dashboards mounted elsewhere"
    assert list((ROOT / "grafana" / "dashboards").glob("*.json"))

    live = compose()["services"]["pulsatrix-exporter"]
    live_targets = {target for _, target in bind_mounts(live)}
    env = dockerfile_env()
    assert {env[CONFIG_ENV], env["CREDENTIALS_DIRECTORY"]} <= live_targets


# -- Prometheus and Alertmanager configs ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROMETHEUS_CONFIGS)
def test_promtool_accepts_the_shipped_prometheus_config(name: str, tmp_path: Path) -> None:
    config = load(DEPLOY / "prometheus" / name)
    assert config["rule_files"] == [
        "/etc/prometheus/alerts.yml",
        "/etc/prometheus/sites.yml",
        "/etc/prometheus/ledger.yml",
    ]
    # Rules without an Alertmanager fire into the void.
    (alertmanager,) = config["alerting"]["alertmanagers"]
    assert [t for s in alertmanager["static_configs"] for t in s["targets"]]
    for rules in ("alerts.yml", "sites.yml", "ledger.yml"):
        shutil.copyfile(DEPLOY / "prometheus" / rules, tmp_path / rules)
    text = (DEPLOY / "prometheus" / name).read_text(encoding="utf-8").replace("/etc/prometheus/", "")
    (tmp_path / name).write_text(text, encoding="utf-8")
    result = promtool("check", "config", name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "rules found" in result.stdout


def pulsatrix_jobs(name: str) -> dict[str, dict[str, Any]]:
    jobs = {j["job_name"]: j for j in load(DEPLOY / "prometheus" / name)["scrape_configs"]}
    pulsatrix = {n: j for n, j in jobs.items() if n.startswith("pulsatrix")}
    # README "Prometheus configuration": `pulsatrix` probes the chargers, `pulsatrix-exporter` scrapes the exporters.
    assert sorted(pulsatrix) == ["pulsatrix", "pulsatrix-exporter"]
    return pulsatrix


def alert_job_selectors() -> list[str]:
    """The job matchers of the `up` selectors in the alert rules (job="x" or job=~"x"), as full regexes."""
    text = (DEPLOY / "prometheus" / "alerts.yml").read_text(encoding="utf-8")
    selectors = []
    for op, value in re.findall(r'\bup\{[^}]*?\bjob\s*(=~|=)\s*"([^"]*)"', text):
        selectors.append(value if op == "=~" else re.escape(value))
    assert selectors, "the alert rules watch `up` of the exporter's job"
    return selectors


@pytest.mark.parametrize("name", PROMETHEUS_CONFIGS)
def test_prometheus_configs_probe_through_exporter_routes_on_the_default_port(name: str) -> None:
    routes = app_routes()
    job = pulsatrix_jobs(name)["pulsatrix"]
    assert job["metrics_path"] == "/probe" and "/probe" in routes
    (sd,) = job["http_sd_configs"]
    assert urlsplit(sd["url"]).path == "/sd" and "/sd" in routes
    assert url_port(sd["url"]) == DEFAULT_PORT
    (address,) = [r for r in job["relabel_configs"] if r.get("target_label") == "__address__"]
    assert url_port(address["replacement"]) == DEFAULT_PORT


@pytest.mark.parametrize("name", PROMETHEUS_CONFIGS)
def test_prometheus_configs_scrape_every_exporter_process_on_its_own_metrics_path(name: str) -> None:
    jobs = pulsatrix_jobs(name)
    probe, own = jobs["pulsatrix"], jobs["pulsatrix-exporter"]
    assert own["metrics_path"] == "/-/metrics" and "/-/metrics" in app_routes()
    targets = [t for s in own["static_configs"] for t in s["targets"]]
    assert all(url_port(t) == DEFAULT_PORT for t in targets)
    # Exactly the processes the probe job sends its scrapes to: one target per exporter (per replica, sharded).
    (address,) = [r for r in probe["relabel_configs"] if r.get("target_label") == "__address__"]
    hashmods = [r["modulus"] for r in probe["relabel_configs"] if r.get("action") == "hashmod"]
    if hashmods:
        (modulus,) = hashmods
        assert "${1}" in address["replacement"]
        assert targets == [address["replacement"].replace("${1}", str(i)) for i in range(modulus)]
    else:
        assert targets == [address["replacement"]]
    # The alert rules watch `up` of these jobs by name (PulsatrixExporterDown, absent(...)).
    for selector in alert_job_selectors():
        assert any(re.fullmatch(selector, job) for job in jobs), f"alerts select job {selector!r}: not scraped"
    assert any(re.fullmatch(selector, "pulsatrix-exporter") for selector in alert_job_selectors())


def test_amtool_accepts_the_alertmanager_config_and_its_inhibitions_name_real_alerts() -> None:
    path = DEPLOY / "alertmanager" / "alertmanager.yml"
    binary = find_binary("amtool")
    result = subprocess.run(
        [binary, "check-config", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = {r.get("alert") for g in load(DEPLOY / "prometheus" / "alerts.yml")["groups"] for r in g["rules"]}
    for rule in load(path)["inhibit_rules"]:
        for matcher in rule["source_matchers"]:
            name = re.fullmatch(r'alertname="(\w+)"', matcher)
            assert name and name.group(1) in alerts, matcher


# -- systemd and the example config --------------------------------------------------------------------------------


def unit(commented: bool = False) -> dict[str, list[str]]:
    """The unit's keys; ``commented``: the commented-out example lines (``#Key=value``) instead."""
    keys: dict[str, list[str]] = {}
    for line in (DEPLOY / "systemd" / "pulsatrix-exporter.service").read_text(encoding="utf-8").splitlines():
        if commented:
            match = re.fullmatch(r"#([A-Z][A-Za-z]+)=(.*)", line)
            if match:
                keys.setdefault(match.group(1), []).append(match.group(2).strip())
        elif "=" in line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            keys.setdefault(key.strip(), []).append(value.strip())
    return keys


def readme_section(title: str) -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return readme.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def string_values(tree: Any) -> list[str]:
    if isinstance(tree, dict):
        return [s for value in tree.values() for s in string_values(value)]
    if isinstance(tree, list):
        return [s for value in tree for s in string_values(value)]
    return [tree] if isinstance(tree, str) else []


def env_file() -> dict[str, str]:
    env = {}
    for line in (DEPLOY / "systemd" / "pulsatrix-exporter.env").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


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


def documented_fleet() -> int:
    scaling = readme_section("Scaling to thousands of chargers")
    match = re.search(r"up to \*\*([\d,]+) chargers\*\* per process", scaling)
    assert match, "README states the largest fleet one process is sized for"
    return int(match.group(1).replace(",", ""))


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

    analyze = shutil.which("systemd-analyze")
    if analyze:  # an extra check where systemd's tools are installed: unknown keys, bad values
        checked = tmp_path / "pulsatrix-exporter.service"
        text = (DEPLOY / "systemd" / "pulsatrix-exporter.service").read_text(encoding="utf-8")
        text = text.replace(argv[0], shutil.which("true") or "/bin/true")
        # ... also with the example credentials switched on, as the README's drop-in does.
        text = text.replace("\n#LoadCredential=", "\nLoadCredential=")
        checked.write_text(text, encoding="utf-8")
        result = subprocess.run(
            [analyze, "verify", str(checked)], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0 and "Unknown" not in result.stderr, result.stderr


def shell_commands(text: str) -> list[list[str]]:
    """The commands of the ```sh blocks in ``text``, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(words)
    return commands


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


# -- Kubernetes ----------------------------------------------------------------------------------------------------


K8S_EXAMPLES = ["secret.example.yml"]  # applied by the user, never by `kubectl apply -k`


def k8s_documents(names: list[str]) -> dict[tuple[str, str], dict[str, Any]]:
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for name in names:
        for doc in yaml.safe_load_all((K8S / name).read_text(encoding="utf-8")):
            if doc is not None:
                key = (doc["kind"], doc["metadata"]["name"])
                assert key not in objects, f"duplicate {key}"
                objects[key] = doc
    return objects


def k8s_objects() -> dict[tuple[str, str], dict[str, Any]]:
    """What `kubectl apply -k deploy/kubernetes/` applies."""
    kustomization = load(K8S / "kustomization.yaml")
    manifests = sorted(p.name for p in K8S.glob("*.yml") if p.name not in K8S_EXAMPLES)
    assert sorted(kustomization["resources"]) == manifests, "kustomization.yaml lists every manifest"
    assert not set(K8S_EXAMPLES) & set(kustomization["resources"])
    assert not kustomization.get("secretGenerator")
    return k8s_documents(manifests)


def test_kubernetes_kustomization_never_overwrites_the_users_secret() -> None:
    applied = k8s_objects()
    # A Secret in the kustomization would replace the user's credentials with placeholders on every apply.
    assert not [key for key in applied if key[0] == "Secret"]
    _, pod, _ = exporter_pod()
    (secret_name,) = [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v]
    (example,) = [o for (kind, name), o in k8s_documents(K8S_EXAMPLES).items() if kind == "Secret"]
    assert example["metadata"]["name"] == secret_name
    assert example["metadata"]["namespace"] == load(K8S / "kustomization.yaml")["namespace"]
    comments = [line.lstrip("#").strip() for line in (K8S / "secret.example.yml").read_text().splitlines()]
    text = " ".join(comments).replace("\\ ", " ")  # the shell command, its continuation lines joined
    create = re.search(r"kubectl -n (\S+) create secret generic (\S+)((?:\s+--from-file=\S+)+)", text)
    assert create, "secret.example.yml shows how to create the real Secret"
    assert (create.group(1), create.group(2)) == (example["metadata"]["namespace"], secret_name)
    keys = set(re.findall(r"--from-file=([^=\s]+)=", create.group(3)))
    assert keys == set(example["stringData"])
    install = readme_section("Install")
    assert f"create secret generic {secret_name}" in install and "secret.example.yml" in install


def exporter_pod() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    objects = k8s_objects()
    (statefulset,) = [o for (kind, _), o in objects.items() if kind == "StatefulSet"]
    pod = statefulset["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "exporter"]
    return statefulset, pod, container


def test_kubernetes_config_reloader_reloads_the_exporter_when_its_files_change() -> None:
    _, pod, container = exporter_pod()
    (reloader,) = [c for c in pod["containers"] if c["name"] != "exporter"]
    assert reloader["image"].split(":")[0] == "ghcr.io/jimmidyson/configmap-reload"
    webhook = urlsplit(flag(reloader["args"], "--webhook-url"))
    assert (webhook.hostname, webhook.port, webhook.path) == ("127.0.0.1", DEFAULT_PORT, "/-/reload")
    app = create_app(parse_config("chargers: [{name: a, url: 'http://127.0.0.1:1'}]"))
    methods = {r.method for r in app.router.routes() if r.resource is not None and r.resource.canonical == "/-/reload"}
    assert methods == {"POST"}  # configmap-reload's default webhook method
    # It watches exactly what the exporter reads: the config file's directory and the credentials.
    watched = {a.split("=", 1)[1] for a in reloader["args"] if a.startswith("--volume-dir=")}
    exporter_mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert watched == set(exporter_mounts)
    assert {m["mountPath"]: m["name"] for m in reloader["volumeMounts"]} == exporter_mounts
    assert all(m.get("readOnly") for m in reloader["volumeMounts"])
    security = reloader["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= set(reloader["resources"]["limits"])
    assert "rollout restart" not in (K8S / "exporter.yml").read_text(encoding="utf-8")


def test_kubernetes_statefulset_probes_ports_resources_and_security() -> None:
    objects = k8s_objects()
    statefulset, pod, container = exporter_pod()
    routes = app_routes()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": DEFAULT_PORT}
    assert url_port(flag(container["args"], "--listen")) == DEFAULT_PORT
    for probe, path in (("livenessProbe", "/-/healthy"), ("readinessProbe", "/-/ready")):
        get = container[probe]["httpGet"]
        assert get["path"] == path and path in routes
        assert ports.get(get["port"], get["port"]) == DEFAULT_PORT

    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    assert pod["securityContext"]["runAsNonRoot"] is True
    user = [rest for k, rest in dockerfile_instructions() if k == "USER"][-1].split(":")[0]
    assert str(pod["securityContext"]["runAsUser"]) == user
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]

    service = objects[("Service", statefulset["spec"]["serviceName"])]
    assert service["spec"]["clusterIP"] == "None", "headless: stable per-replica names for the shards"
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (service_port,) = service["spec"]["ports"]
    assert service_port["port"] == DEFAULT_PORT and service_port["targetPort"] in ports


def test_kubernetes_configmap_is_a_valid_config_using_the_mounted_secret_files(tmp_path: Path) -> None:
    objects = k8s_objects()
    _, pod, container = exporter_pod()
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}

    config_path = PurePosixPath(flag(container["args"], "--config"))
    config_volume = mounts[str(config_path.parent)]["configMap"]
    config_text = objects[("ConfigMap", config_volume["name"])]["data"][config_path.name]

    (secret_dir,) = [path for path, volume in mounts.items() if "secret" in volume]
    secret = k8s_documents(K8S_EXAMPLES)[("Secret", mounts[secret_dir]["secret"]["secretName"])]
    files = re.findall(r"_file: (\S+)", config_text)
    assert files
    for file in files:
        assert PurePosixPath(file).parent == PurePosixPath(secret_dir), f"{file} is not in the mounted Secret"
        assert PurePosixPath(file).name in secret["stringData"], f"{file}: no such key in the Secret"
    for key, value in secret["stringData"].items():
        (tmp_path / key).write_text(value, encoding="utf-8")

    config = parse_config(config_text.replace(secret_dir, str(tmp_path)), source="configmap", env={})
    assert len(config.chargers) == 3
    assert sum(c.auth is not None for c in config.chargers) == len(files)


def test_kubernetes_scrapeconfig_is_the_sharded_prometheus_config_for_the_statefulset() -> None:
    objects = k8s_objects()
    statefulset, _, _ = exporter_pod()
    sharded = load(DEPLOY / "prometheus" / "prometheus-sharded.yml")
    jobs = {j["job_name"]: j for j in sharded["scrape_configs"]}
    scrapes = [o for (kind, _), o in objects.items() if kind == "ScrapeConfig"]
    assert len(scrapes) == len(jobs), "one ScrapeConfig per job of prometheus-sharded.yml"

    def snake(key: str) -> str:
        return re.sub(r"[A-Z]", lambda m: "_" + m.group(0).lower(), key)

    by_job: dict[str, dict[str, Any]] = {}
    for scrape in scrapes:
        # The operator names the job scrapeConfig/<namespace>/<name>: the first relabeling sets the real name.
        relabelings = [{snake(k): v for k, v in r.items()} for r in scrape["spec"]["relabelings"]]
        job_rule, *rest = relabelings
        assert job_rule.keys() == {"target_label", "replacement"} and job_rule["target_label"] == "job"
        job = jobs[job_rule["replacement"]]
        by_job[job["job_name"]] = scrape
        assert rest == job.get("relabel_configs", [])
        assert scrape["spec"]["metricsPath"] == job["metrics_path"]
        assert scrape["spec"]["scrapeInterval"] == sharded["global"]["scrape_interval"]
        assert scrape["spec"]["scrapeTimeout"] == sharded["global"]["scrape_timeout"]
        assert [s["targets"] for s in scrape["spec"].get("staticConfigs", [])] == [
            s["targets"] for s in job.get("static_configs", [])
        ]
        assert [s["url"] for s in scrape["spec"].get("httpSDConfigs", [])] == [
            s["url"] for s in job.get("http_sd_configs", [])
        ]
    assert sorted(by_job) == ["pulsatrix", "pulsatrix-exporter"]
    job = jobs["pulsatrix"]
    (sd,) = by_job["pulsatrix"]["spec"]["httpSDConfigs"]

    (hashmod,) = [r for r in job["relabel_configs"] if r.get("action") == "hashmod"]
    assert hashmod["modulus"] == statefulset["spec"]["replicas"], "one shard per replica"
    name = statefulset["metadata"]["name"]
    service = statefulset["spec"]["serviceName"]
    namespace = statefulset["metadata"]["namespace"]
    (address,) = [r for r in job["relabel_configs"] if r.get("target_label") == "__address__"]
    assert address["replacement"] == f"{name}-${{1}}.{service}.{namespace}.svc:{DEFAULT_PORT}"
    assert urlsplit(sd["url"]).hostname == f"{service}.{namespace}.svc"
    # Every replica, by its stable name, is a target of the exporters' own job.
    (own,) = by_job["pulsatrix-exporter"]["spec"]["staticConfigs"]
    replicas = statefulset["spec"]["replicas"]
    assert own["targets"] == [f"{name}-{i}.{service}.{namespace}.svc:{DEFAULT_PORT}" for i in range(replicas)]


def test_kubernetes_docs_name_the_operator_version_the_scrapeconfig_needs() -> None:
    # ScrapeConfig appeared in prometheus-operator v0.65; spec.scrapeInterval / scrapeTimeout only in v0.67.
    specs = [o["spec"] for (kind, _), o in k8s_objects().items() if kind == "ScrapeConfig"]
    needed = 67 if any({"scrapeInterval", "scrapeTimeout"} & spec.keys() for spec in specs) else 65
    texts = {"README.md": readme_section("Install"), "scrapeconfig.yml": (K8S / "scrapeconfig.yml").read_text()}
    for where, text in texts.items():
        versions = [int(v) for v in re.findall(r"(?:operator|Prometheus-operator) \(?v0\.(\d+)\+", text)]
        assert versions, f"{where} names the operator version"
        assert min(versions) >= needed, f"{where}: v0.{min(versions)}+, but the ScrapeConfig needs v0.{needed}+"


def test_kubernetes_prometheusrule_equals_the_alert_rules_file() -> None:
    (rule,) = [o for (kind, _), o in k8s_objects().items() if kind == "PrometheusRule"]
    groups = [g for name in ("alerts.yml", "sites.yml") for g in load(DEPLOY / "prometheus" / name)["groups"]]
    assert rule["spec"]["groups"] == groups
    result = subprocess.run(
        [sys.executable, str(K8S / "generate_prometheusrule.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_readme_shows_the_shipped_sharded_prometheus_config() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Scaling to thousands of chargers", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```yaml\n(.*?)```", section, flags=re.DOTALL)
    assert [yaml.safe_load(b) for b in blocks] == [load(DEPLOY / "prometheus" / "prometheus-sharded.yml")]
