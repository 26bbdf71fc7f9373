"""Write deploy/kubernetes/prometheusrule.yml from the alert, site and ledger rules, so they never drift.

    python -m deploy.kubernetes.generate_prometheusrule           # rewrite prometheusrule.yml (from the top)
    python -m deploy.kubernetes.generate_prometheusrule --check   # exit 1 if it is out of date

The PrometheusRule's ``spec.groups`` is the ``groups`` list of alerts.yml (alerting and recording rules) followed by
that of sites.yml (the sites' capacities) and that of ledger.yml (the energy ledger's change series, without which a
prometheus-operator user's ``report`` always reads the slow raw series), unchanged (tests/test_deploy_kubernetes.py
checks). Edit sites.yml, then rerun.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Final

import yaml

from grafana.generated import block_yaml, write_or_check

HERE: Final = Path(__file__).resolve().parent
RULES: Final = HERE.parent / "prometheus" / "alerts.yml"
SITES: Final = HERE.parent / "prometheus" / "sites.yml"
LEDGER: Final = HERE.parent / "prometheus" / "ledger.yml"
OUTPUT: Final = HERE / "prometheusrule.yml"

HEADER: Final = """\
# GENERATED from deploy/prometheus/alerts.yml, sites.yml and ledger.yml by
# deploy/kubernetes/generate_prometheusrule.py -- do not edit.
# The Prometheus resource must select it (spec.ruleSelector; kube-prometheus-stack: label `release: <release>`).
"""


def _groups(path: Path, text: str) -> list[Any]:
    rules = yaml.safe_load(text)
    if not isinstance(rules, dict) or not isinstance(rules.get("groups"), list):
        raise ValueError(f"{path}: expected a mapping with a 'groups' list")
    return list(rules["groups"])


def build(rules_text: str, sites_text: str, ledger_text: str) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "pulsatrix-exporter",
            "namespace": "monitoring",
            "labels": {"app.kubernetes.io/name": "pulsatrix-exporter"},
        },
        "spec": {
            "groups": _groups(RULES, rules_text) + _groups(SITES, sites_text) + _groups(LEDGER, ledger_text)
        },
    }


def render(rules_text: str, sites_text: str, ledger_text: str) -> str:
    return HEADER + block_yaml(build(rules_text, sites_text, ledger_text), width=1000)


def main(argv: list[str] | None = None) -> int:
    description = __doc__.splitlines()[0] if __doc__ else ""

    def files() -> dict[Path, str]:
        texts = (path.read_text(encoding="utf-8") for path in (RULES, SITES, LEDGER))
        return {OUTPUT: render(*texts)}

    return write_or_check(description, files, "deploy.kubernetes.generate_prometheusrule", argv)


if __name__ == "__main__":
    sys.exit(main())
