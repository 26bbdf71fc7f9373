"""Helpers of the deploy tests (tests/test_deploy*.py): the repository's deploy files read as the programs that use
them read them."""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from exporter.config import parse_config
from exporter.serve.app import create_app
from tests.support.docs import doc_section
from tests.support.servers import wait_until_ready

ROOT = Path(__file__).resolve().parents[2]


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


def data_files() -> list[Path]:
    files = [
        p
        for base in (DEPLOY, ROOT / "grafana")
        for p in sorted(base.rglob("*"))
        if p.suffix in (".yml", ".yaml", ".json") and p.is_file()
    ]
    assert files
    return files


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


def pulsatrix_jobs(name: str) -> dict[str, dict[str, Any]]:
    jobs = {j["job_name"]: j for j in load(DEPLOY / "prometheus" / name)["scrape_configs"]}
    pulsatrix = {n: j for n, j in jobs.items() if n.startswith("pulsatrix")}
    # docs/deployment.md, "Prometheus configuration": `pulsatrix` probes the chargers, `pulsatrix-exporter` scrapes the
    # exporters.
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
    """The level-2 section ``title`` of the documentation (README.md or a page of docs/)."""
    return doc_section(title)


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


def documented_fleet() -> int:
    scaling = readme_section("Scaling to thousands of chargers")
    match = re.search(r"up to \*\*([\d,]+) chargers\*\* per process", scaling)
    assert match, "README states the largest fleet one process is sized for"
    return int(match.group(1).replace(",", ""))


def shell_commands(text: str) -> list[list[str]]:
    """The commands of the ```sh blocks in ``text``, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(words)
    return commands


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


def exporter_pod() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    objects = k8s_objects()
    (statefulset,) = [o for (kind, _), o in objects.items() if kind == "StatefulSet"]
    pod = statefulset["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "exporter"]
    return statefulset, pod, container


def unit_exposure(analyze: str, unit: Path) -> float:
    """The exposure ``systemd-analyze security --offline=yes`` rates a unit file with (0 locked down, 10 plain)."""
    result = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1))
