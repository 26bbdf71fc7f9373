"""The monthly report job as systemd, Kubernetes and compose run it: every command is one the report accepts, on
the 1st of each month in the report's zone, catching up a missed month, writing last month's files, hardened like the
exporter (``systemd-analyze verify`` and ``security``)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from exporter.report.command import build_parser
from tests.support.deploy import DEPLOY, compose, dockerfile_instructions, exporter_pod, k8s_objects, unit_exposure

SYSTEMD = DEPLOY / "systemd"
MAX_EXPOSURE = 1.0  # as the exporter's unit (tests/test_systemd_exposure.py)
WANTED = {  # what every deployment writes each month: (view, file name after the month)
    ("sessions", "sessions.csv"), ("sessions", "sessions.xlsx"), ("sessions", "statement.html"),
    ("summary", "summary.csv"), ("summary", "summary.xlsx"),
}  # fmt: skip


def keys(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value.strip('"')
    return env


def check_runs(argvs: Sequence[Sequence[str]], directory: str) -> None:
    """Each argv is a valid `report` command for last month with --force, and together they write WANTED."""
    written = set()
    for argv in argvs:
        args = build_parser().parse_args(list(argv))
        assert (args.month, args.force, args.format) == ("last", True, None), argv
        assert args.price is not None or args.tariff or args.price_series, "a price, so the files carry the cost"
        for output in args.output:
            folder, _, name = output.rpartition("/")
            assert folder == directory and name.startswith("{period}-"), output
            written.add((args.view, name.removeprefix("{period}-")))
    assert written == WANTED


def expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) in a container's args."""
    return re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg)


def analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    return found


def test_systemd_service_runs_both_views_for_last_month_into_the_directory_of_its_environment_file() -> None:
    unit = keys(SYSTEMD / "pulsatrix-report.service")
    env = env_file(SYSTEMD / "pulsatrix-report.env")
    assert unit["Type"] == ["oneshot"]
    assert unit["EnvironmentFile"] == ["/etc/pulsatrix-exporter/pulsatrix-report.env"]
    assert env["REPORT_DIR"] == f"/var/lib/{unit['StateDirectory'][0]}"  # the one directory it may write
    argvs = []
    for line in unit["ExecStart"]:
        # systemd's rules: ${X} is replaced within a word, $X is split into words
        text = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], line)
        argv = [w for word in shlex.split(text) for w in (env[word[1:]].split() if word.startswith("$") else [word])]
        assert Path(argv[0]).name == "pulsatrix-exporter" and argv[1] == "report"
        argvs.append(argv[2:])
    check_runs(argvs, env["REPORT_DIR"])
    assert {"--tz", env["REPORT_TZ"]} <= set(argvs[0])


def test_systemd_timer_fires_on_the_first_after_midnight_in_the_reports_zone_and_catches_up() -> None:
    timer = keys(SYSTEMD / "pulsatrix-report.timer")
    env = env_file(SYSTEMD / "pulsatrix-report.env")
    assert timer["Persistent"] == ["true"]
    (calendar,) = timer["OnCalendar"]
    assert calendar == f"*-*-01 00:30:00 {env['REPORT_TZ']}"
    result = subprocess.run(
        [analyze(), "calendar", "--iterations=3", calendar], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert len(re.findall(r"(?:Next elapse|Iter\. #\d): \w+ \d{4}-\d{2}-\d{2} \d\d:30:00 UTC", result.stdout)) == 3


def test_systemd_units_verify_and_the_service_is_hardened_like_the_exporter(tmp_path: Path) -> None:
    binary = analyze()
    service = (SYSTEMD / "pulsatrix-report.service").read_text(encoding="utf-8")
    checked = tmp_path / "pulsatrix-report.service"
    checked.write_text(service.replace("/opt/pulsatrix-exporter/bin/pulsatrix-exporter", "/bin/true"), "utf-8")
    shutil.copy(SYSTEMD / "pulsatrix-report.timer", tmp_path)
    verify = subprocess.run(
        [binary, "verify", str(checked), str(tmp_path / "pulsatrix-report.timer")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0 and "Unknown" not in verify.stderr, verify.stderr
    assert unit_exposure(binary, SYSTEMD / "pulsatrix-report.service") <= MAX_EXPOSURE
    exporter = keys(SYSTEMD / "pulsatrix-exporter.service")
    report = keys(SYSTEMD / "pulsatrix-report.service")
    for key in ("DynamicUser", "ProtectSystem", "SystemCallFilter", "IPAddressDeny", "IPAddressAllow"):
        assert report[key] == exporter[key], key


def test_kubernetes_cronjob_runs_the_exporters_image_hardened_onto_its_volume() -> None:
    objects = k8s_objects()
    cronjob = objects[("CronJob", "pulsatrix-report")]
    spec = cronjob["spec"]
    assert spec["schedule"] == "30 0 1 * *" and spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] >= 86_400  # a cluster down at that moment still runs it
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    containers = [*pod["initContainers"], *pod["containers"]]  # one after the other
    _, _, exporter = exporter_pod()
    user = [rest for k, rest in dockerfile_instructions() if k == "USER"][-1].split(":")[0]
    assert str(pod["securityContext"]["runAsUser"]) == user and pod["securityContext"]["runAsNonRoot"] is True
    (volume,) = pod["volumes"]
    assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in objects
    argvs = []
    for container in containers:
        assert container["image"] == exporter["image"]
        assert container["securityContext"] == exporter["securityContext"]
        assert container["volumeMounts"] == [{"name": volume["name"], "mountPath": "/reports"}]
        env = {e["name"]: e["value"] for e in container["env"]}
        argv = [expand(a, env) for a in container["args"]]
        assert argv[0] == "report" and f"--tz={spec['timeZone']}" in argv
        argvs.append(argv[1:])
    check_runs(argvs, "/reports")
    kubectl = shutil.which("kubectl")
    if kubectl:  # the kustomization builds with the new objects (offline: no cluster needed)
        built = subprocess.run(
            [kubectl, "kustomize", str(DEPLOY / "kubernetes")], capture_output=True, text=True, timeout=60, check=False
        )
        assert built.returncode == 0 and "kind: CronJob" in built.stdout, built.stderr


def test_compose_report_service_runs_both_views_into_deploy_reports() -> None:
    service = compose()["services"]["pulsatrix-report"]
    assert service["profiles"] == ["report"] and service["read_only"] is True and service["cap_drop"] == ["ALL"]
    assert service["entrypoint"] == ["sh", "-c"]
    (script,) = service["command"]
    env = service["environment"]
    text = script.replace("$$REPORT_TZ", env["REPORT_TZ"]).replace("$$REPORT_ARGS", env["REPORT_ARGS"])
    argvs = [shlex.split(part)[2:] for part in text.split("&&")]
    assert all(shlex.split(part)[:2] == ["pulsatrix-exporter", "report"] for part in text.split("&&"))
    check_runs(argvs, "/reports")
    (mount,) = service["volumes"]
    assert (mount["source"], mount["target"]) == ("./reports", "/reports")
    ignored = (DEPLOY.parent / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert "deploy/reports/" in ignored  # the bills stay out of git
