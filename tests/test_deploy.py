"""The deploy files (container, compose, systemd, Kubernetes, Prometheus, Alertmanager) against the code they run.

Docker, systemd and Kubernetes are not available to the tests, so these files are checked statically: every file
parses, and every reference in them (ports, HTTP paths, mounted files, config paths, secrets, alert rules) points at
something that exists in the repository or in the exporter. Prometheus and Alertmanager configs are checked by
promtool / amtool, and the container's health check command is run against a real exporter process.
The systemd unit is in test_deploy_systemd.py (and its exposure in test_systemd_exposure.py), Kubernetes in
test_deploy_kubernetes.py; their shared readers in tests/support/deploy.py.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest
import yaml

from exporter.cli import CONFIG_ENV, DEFAULT_PORT
from tests.support.deploy import (
    DEPLOY,
    PROMETHEUS_CONFIGS,
    ROOT,
    alert_job_selectors,
    app_routes,
    bind_mounts,
    compose,
    data_files,
    demo_exporter,
    dockerfile_env,
    dockerfile_instructions,
    documented_fleet,
    flag,
    healthcheck_command,
    host_names,
    load,
    pulsatrix_jobs,
    readme_section,
    services_in,
    url_port,
)
from tests.support.servers import REQUIRE_ENV, find_binary, free_port, promtool


@pytest.mark.parametrize("path", data_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_and_json_file_parses(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        assert isinstance(json.loads(text), dict | list)
    else:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
        assert documents, f"{path} has no content"
        # VictoriaMetrics' -relabelConfig file is a list of relabel configs; every other file is a mapping
        kind = list if path.name == "relabel.yml" else dict
        assert all(isinstance(d, kind) for d in documents), f"{path}: every document must be a {kind.__name__}"


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
    services = compose()["services"]
    # the monthly report is a batch job (`run --rm`, docs/energy-reports.md, "Energy reports"): it listens on nothing
    published = {name: svc.get("ports", []) for name, svc in services.items() if name != "pulsatrix-report"}
    assert all(published.values()), f"every service publishes its port: {published}"
    assert "ports" not in services["pulsatrix-report"]
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

    # Skipped outside a git checkout on a developer's machine, failing under PULSATRIX_REQUIRE_E2E=1 (CI runs in a
    # clone): a passing test has always asked git.
    git = find_binary("git", package="git")
    if not (ROOT / ".git").exists():
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{ROOT} is not a git checkout, but {REQUIRE_ENV}=1")
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
