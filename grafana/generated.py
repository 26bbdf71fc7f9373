"""Writing or checking generated files: the one ``main`` of every generator (dashboards, rules, PrometheusRule).

python -m <generator>          # rewrite the files that changed
python -m <generator> --check  # exit 1, naming them, if a committed file is out of date
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml


def write_or_check(
    description: str, generate: Callable[[], dict[Path, str]], module: str, argv: list[str] | None
) -> int:
    """Compare each file of ``generate()`` with its committed text; write the ones that differ, or with ``--check``
    only name them (exit 1). ``module`` is the generator's ``python -m`` name, for the message."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, text in generate().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            sys.stdout.write(f"wrote {path}\n")
    for path in stale:
        sys.stderr.write(f"{path} is out of date: run python -m {module}\n")
    return 1 if stale else 0


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (PromQL, descriptions) as literal blocks, so the output stays readable."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_BlockDumper.add_representer(str, _str)


def block_yaml(document: Any, width: int) -> str:
    """``document`` as YAML in its own key order, multi-line strings as literal blocks."""
    return yaml.dump(document, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=width)
