#!/usr/bin/env python3
"""Write deploy/kubernetes/prometheusrule.yml from deploy/prometheus/alerts.yml and sites.yml, so they never drift.

    python deploy/kubernetes/generate_prometheusrule.py           # rewrite prometheusrule.yml
    python deploy/kubernetes/generate_prometheusrule.py --check   # exit 1 if it is out of date

The PrometheusRule's ``spec.groups`` is the ``groups`` list of alerts.yml (alerting and recording rules) followed by
that of sites.yml (the sites' capacities), unchanged (tests/test_deploy.py checks). Edit sites.yml, then rerun.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE.parent / "prometheus" / "alerts.yml"
SITES = HERE.parent / "prometheus" / "sites.yml"
OUTPUT = HERE / "prometheusrule.yml"

HEADER = """\
# GENERATED from deploy/prometheus/alerts.yml and sites.yml by deploy/kubernetes/generate_prometheusrule.py --
# do not edit.
# The Prometheus resource must select it (spec.ruleSelector; kube-prometheus-stack: label `release: <release>`).
"""


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (PromQL, descriptions) as literal blocks, so the output stays readable."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def _groups(path: Path, text: str) -> list[Any]:
    rules = yaml.safe_load(text)
    if not isinstance(rules, dict) or not isinstance(rules.get("groups"), list):
        raise ValueError(f"{path}: expected a mapping with a 'groups' list")
    return list(rules["groups"])


def build(rules_text: str, sites_text: str) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "pulsatrix-exporter",
            "namespace": "monitoring",
            "labels": {"app.kubernetes.io/name": "pulsatrix-exporter"},
        },
        "spec": {"groups": _groups(RULES, rules_text) + _groups(SITES, sites_text)},
    }


def render(rules_text: str, sites_text: str) -> str:
    document = build(rules_text, sites_text)
    body = yaml.dump(document, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=1000)
    return HEADER + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only check that the committed file is up to date")
    args = parser.parse_args(argv)
    wanted = render(RULES.read_text(encoding="utf-8"), SITES.read_text(encoding="utf-8"))
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != wanted:
            print(f"{OUTPUT} is out of date: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        print(f"{OUTPUT}: up to date")
        return 0
    OUTPUT.write_text(wanted, encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
