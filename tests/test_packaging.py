"""The package as a user installs it: build the wheel, install it into a fresh virtualenv, run the console script.

Runs from a temporary directory so that the checkout's ``exporter/`` cannot stand in for the installed package.
Dependencies come from the package index (PyPI or the configured mirror).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter import __version__

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "deploy" / "config.example.yml"
SOURCES = ("pyproject.toml", "README.md", "exporter")


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    workdir: Path

    @property
    def script(self) -> Path:
        return self.venv / "bin" / "pulsatrix-exporter"

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run([str(self.script), *args], cwd=self.workdir, env=env)


def run(argv: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PULSATRIX_", "VIRTUAL_ENV"))}
    return subprocess.run(
        list(argv), cwd=cwd, env={**base, **(env or {})}, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tmp = tmp_path_factory.mktemp("packaging")
    src, dist, venv, workdir = tmp / "src", tmp / "dist", tmp / "venv", tmp / "work"
    workdir.mkdir()
    # Build from exactly what the container build copies (deploy/Dockerfile, .dockerignore): a clean tree.
    copied = [
        word
        for line in (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8").splitlines()
        if line.startswith("COPY ") and "--from" not in line
        for word in line.split()[1:-1]
    ]
    assert sorted(copied) == sorted(SOURCES)
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copyfile(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    built = run([*pip, "wheel", "--no-deps", "--wheel-dir", str(dist), str(src)], cwd=tmp)
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("pulsatrix_exporter-*.whl")
    created = run([sys.executable, "-m", "venv", str(venv)], cwd=tmp)
    assert created.returncode == 0, created.stderr
    venv_pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    done = run([*venv_pip, "install", str(wheel)], cwd=tmp)
    assert done.returncode == 0, done.stderr
    return Installed(wheel=wheel, venv=venv, workdir=workdir)


def test_wheel_holds_the_package_and_its_console_script(installed: Installed) -> None:
    assert installed.wheel.name.startswith(f"pulsatrix_exporter-{__version__}-")
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = wheel.namelist()
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = wheel.read(entry_points).decode()
    # every module of the package, subpackages included (a subpackage left out of pyproject once lost `report`)
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "exporter").rglob("*.py")}
    assert modules <= set(names), sorted(modules - set(names))
    assert "exporter/report/command.py" in names and "exporter/simulator/device.py" in names
    assert not [n for n in names if n.startswith(("tests/", "bench/", "deploy/"))]
    assert "pulsatrix-exporter = exporter.cli:main" in scripts


def test_installed_console_script_answers_help_and_version(installed: Installed) -> None:
    where = run(
        [str(installed.venv / "bin" / "python"), "-c", "import exporter; print(exporter.__file__)"],
        cwd=installed.workdir,
    )
    assert Path(where.stdout.strip()).is_relative_to(installed.venv), "the installed copy, not the checkout"

    help_ = installed.run("--help")
    assert help_.returncode == 0, help_.stderr
    for option in ("--config", "--listen", "--check-config", "--demo", "simulate"):
        assert option in help_.stdout
    report = installed.run("report", "sessions", "--help")
    assert report.returncode == 0, report.stderr
    assert "--prometheus" in report.stdout

    version = installed.run("--version")
    assert version.returncode == 0
    assert version.stdout.strip() == f"pulsatrix-exporter {__version__}"


def test_installed_check_config_accepts_the_example_config(installed: Installed, tmp_path: Path) -> None:
    (tmp_path / "depot-password").write_text("s3cret\n", encoding="utf-8")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path), "OFFICE_TOKEN": "t0ken"}
    result = installed.run("--config", str(EXAMPLE), "--check-config", env=env)
    assert result.returncode == 0, result.stderr
    assert str(EXAMPLE) in result.stdout and "OK, 3 chargers" in result.stdout
    assert "s3cret" not in result.stdout + result.stderr and "t0ken" not in result.stdout + result.stderr

    # Without the secrets it names the file, each key and what is missing.
    missing = installed.run("--config", str(EXAMPLE), "--check-config", env={})
    assert missing.returncode == 1
    assert f"{EXAMPLE}: chargers[1] (depot-3-bay-12): auth.basic.password_file:" in missing.stderr
    assert "'CREDENTIALS_DIRECTORY' is not set" in missing.stderr
    assert (
        f"{EXAMPLE}: chargers[2] (office): auth.bearer.token: environment variable 'OFFICE_TOKEN' is not set"
        in missing.stderr
    )


def test_installed_check_config_rejects_a_bad_config_naming_file_and_key(installed: Installed, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("chargers:\n  - name: garage\n    ulr: http://192.168.1.50\n", encoding="utf-8")
    result = installed.run("--config", str(bad), "--check-config")
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"{bad}: chargers[0] (garage): ulr: unknown key (did you mean 'url'?)" in result.stderr
    assert f"{bad}: chargers[0] (garage): url: required key is missing" in result.stderr

    # The config path can also come from the environment, as in the container image.
    from_env = installed.run("--check-config", env={"PULSATRIX_EXPORTER_CONFIG": str(bad)})
    assert from_env.returncode == 1 and f"{bad}: chargers[0] (garage): ulr" in from_env.stderr
