"""The exporter's command line run as a user runs it: a fresh process, a minimal environment."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m exporter *args`` with only PATH (and ``env``) set; the caller asserts on its exit and output."""
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": os.environ.get("PATH", "/usr/bin"), **(env or {})},
    )


def report_in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``pulsatrix-exporter report ARGS`` in this process: exit code, stdout, stderr."""
    from exporter.cli import main

    code = main(["report", *args])
    out, err = capsys.readouterr()
    return code, out, err
