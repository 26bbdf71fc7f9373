"""The Kubernetes manifests (kustomization, StatefulSet, reload sidecar, ScrapeConfig, PrometheusRule) against the
code and the other deploy files.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import yaml

from exporter.cli import DEFAULT_PORT, build_parser
from exporter.config import parse_config
from exporter.serve.app import create_app
from tests.support.deploy import (
    DEPLOY,
    K8S,
    K8S_EXAMPLES,
    ROOT,
    app_routes,
    dockerfile_instructions,
    exporter_pod,
    flag,
    k8s_documents,
    k8s_objects,
    load,
    readme_section,
    url_port,
)
from tests.support.servers import promtool


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


def test_kubernetes_config_reloader_reloads_the_exporter_when_its_files_change() -> None:
    _, pod, container = exporter_pod()
    (reloader,) = [c for c in pod["containers"] if c["name"] != "exporter"]
    assert reloader["image"].split(":")[0] == "ghcr.io/jimmidyson/configmap-reload"
    webhook = urlsplit(flag(reloader["args"], "--webhook-url"))
    assert (webhook.hostname, webhook.port, webhook.path) == ("127.0.0.1", DEFAULT_PORT, "/-/reload")
    app = create_app(parse_config("chargers: [{name: a, url: 'http://127.0.0.1:1'}]"))
    methods = {r.method for r in app.router.routes() if r.resource is not None and r.resource.canonical == "/-/reload"}
    assert methods == {"POST"}  # configmap-reload's default webhook method
    # POST /-/reload is refused (403) unless the exporter runs with --web.enable-lifecycle: the pod's does.
    assert build_parser().parse_args(container["args"]).web_enable_lifecycle is True
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


def test_kubernetes_prometheusrule_groups_pass_promtool(tmp_path: Path) -> None:
    (rule,) = [o for (kind, _), o in k8s_objects().items() if kind == "PrometheusRule"]
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}), encoding="utf-8")
    result = promtool("check", "rules", "rules.yml", cwd=tmp_path)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr
    assert any(r.get("record") == "pulsatrix:ledger_recording" for g in rule["spec"]["groups"] for r in g["rules"])


def test_kubernetes_prometheusrule_equals_the_alert_rules_file() -> None:
    (rule,) = [o for (kind, _), o in k8s_objects().items() if kind == "PrometheusRule"]
    names = ("alerts.yml", "sites.yml", "ledger.yml")  # the ledger's too: report's fast path under the operator
    groups = [g for name in names for g in load(DEPLOY / "prometheus" / name)["groups"]]
    assert rule["spec"]["groups"] == groups
    result = subprocess.run(
        [sys.executable, "-m", "deploy.kubernetes.generate_prometheusrule", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_readme_shows_the_shipped_sharded_prometheus_config() -> None:
    section = readme_section("Scaling to thousands of chargers")
    blocks = re.findall(r"```yaml\n(.*?)```", section, flags=re.DOTALL)
    assert [yaml.safe_load(b) for b in blocks] == [load(DEPLOY / "prometheus" / "prometheus-sharded.yml")]


def test_compose_and_systemd_reload_by_sighup_without_the_lifecycle_api() -> None:
    """SIGHUP always reloads and needs no credentials, so neither opens POST /-/reload (--web.enable-lifecycle)."""
    unit = (ROOT / "deploy" / "systemd" / "pulsatrix-exporter.service").read_text(encoding="utf-8")
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit.splitlines()
    assert build_parser().parse_args(exec_start.split()[1:]).web_enable_lifecycle is False
    compose = (ROOT / "deploy" / "docker-compose.yml").read_text(encoding="utf-8")
    assert "kill -s HUP pulsatrix-exporter" in compose
    exporters = {n: svc for n, svc in yaml.safe_load(compose)["services"].items() if n.startswith("pulsatrix-exporter")}
    assert len(exporters) == 2
    for name, service in exporters.items():
        assert "--web.enable-lifecycle" not in service.get("command", []), name
