"""Config loading benchmark (issue 20): a file of N chargers, each with labels and basic auth, loaded the three
ways the exporter loads it.

    .venv/bin/python bench/config_load.py              # N = 10,000, 5 rounds
    .venv/bin/python bench/config_load.py --chargers 1000 --rounds 3

* ``load_config``: what start-up and every reload (SIGHUP, ``POST /-/reload``) run, in this process;
* ``--check-config``: ``python -m exporter --config FILE --check-config`` as a process of its own (interpreter
  start and imports included), as an operator or a CI job runs it;
* ``load_config, pure YAML``: ``load_config`` with libyaml switched off (PyYAML's pure-Python loader, which
  every release before issue 20 used, and which still reads a text libyaml refuses, to word the error).

The three are interleaved round by round, so that a machine shared with other work slows all of them alike. Prints
the median and minimum wall time (seconds) and the median CPU time of each; the goal is ≤ 1.5 s for N = 10,000.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exporter.config import load_config, yamlfile  # noqa: E402 - after the path set-up, so it runs from a checkout


def write_config(path: Path, chargers: int) -> None:
    """N chargers as an operator writes them: a name, a URL, two labels and basic auth (a quarter from a file)."""
    secret = path.parent / "password"
    secret.write_text("s3cr3t\n")
    lines = ["timeout: 4", "min_interval: 10", "chargers:"]
    for i in range(chargers):
        password = "password_file: password" if i % 4 == 0 else f"password: 'pw-{i:05d}'"
        lines += [
            f"  - name: bay-{i:05d}",
            f"    url: https://bay-{i:05d}.depot-{i // 100:03d}.example.net:8443/",
            "    labels:",
            f"      site: depot-{i // 100:03d}",
            f"      zone: zone-{i % 7}",
            "    auth:",
            "      basic:",
            "        username: exporter",
            f"        {password}",
        ]
    path.write_text("\n".join(lines) + "\n")


def timed(run: Callable[[], object], cpu: Callable[[], float]) -> tuple[float, float]:
    """(wall, CPU) seconds of one run; ``cpu`` reads the CPU time of whoever does the work."""
    start, start_cpu = time.perf_counter(), cpu()
    run()
    return time.perf_counter() - start, cpu() - start_cpu


def children_cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chargers", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yml"
        write_config(path, args.chargers)
        size = path.stat().st_size
        config = load_config(path, env={})
        assert len(config.chargers) == args.chargers
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        command = [sys.executable, "-m", "exporter", "--config", str(path), "--check-config"]

        def check() -> None:
            subprocess.run(command, env=env, check=True, capture_output=True)

        def pure() -> None:
            with mock.patch.object(yamlfile, "_FAST", False):
                load_config(path, env={})

        runs: dict[str, tuple[Callable[[], object], Callable[[], float]]] = {
            "load_config": (lambda: load_config(path, env={}), time.process_time),
            "--check-config": (check, children_cpu),
            "load_config, pure YAML": (pure, time.process_time),
        }
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, (run, cpu) in runs.items():
                results[name].append(timed(run, cpu))
    python = sys.version.split()[0]
    print(f"{args.chargers:,} chargers, {size / 1024 / 1024:.2f} MiB, {args.rounds} rounds, python {python}")
    print(f"  load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    for name, times in results.items():
        wall = [t[0] for t in times]
        cpu_median = statistics.median(t[1] for t in times)
        median = statistics.median(wall)
        print(f"  {name:<23} wall median {median:.3f} s  min {min(wall):.3f} s   CPU median {cpu_median:.3f} s")


if __name__ == "__main__":
    main()
