"""The shipped rules, sped up for end-to-end tests: one minute of the shipped timing becomes one second.

Every ``for:``, every range window (``[5m]`` → ``[5s]``, ``[1h]`` → ``[60s]``) and every group interval is scaled
by 1/60, so the alerts keep their order (a site is reported before its chargers) and their semantics (shares of
scrapes over windows) while the tests run in seconds with a 1 s scrape interval. The shipped files are not touched.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
SITES = DEPLOY / "prometheus" / "sites.yml"
ALERTMANAGER = DEPLOY / "alertmanager" / "alertmanager.yml"
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION_RE = re.compile(r"^(\d+)([smhd])$")
WINDOW_RE = re.compile(r"\[(\d+)([mhd])\]")


def _scaled(duration: str, minimum: int = 2) -> str:
    match = DURATION_RE.match(duration)
    assert match, f"not a simple duration: {duration}"
    return f"{max(minimum, int(match[1]) * UNITS[match[2]] // 60)}s"


def _windows(expr: str) -> str:
    return WINDOW_RE.sub(lambda m: f"[{_scaled(m[1] + m[2], minimum=1)}]", expr)


def fast_rules(
    text: str, target: Path, for_overrides: dict[str, str] | None = None, group_interval: str | None = None
) -> Path:
    """``text`` (a rules file) with its timing scaled, written to ``target``; ``group_interval`` replaces the
    interval of the groups that have one (the hourly ones), so that they have data within seconds."""
    document: dict[str, Any] = yaml.safe_load(text)
    for group in document["groups"]:
        if "interval" in group:
            group["interval"] = group_interval or _scaled(group["interval"])
        for rule in group["rules"]:
            rule["expr"] = _windows(rule["expr"])
            if "for" in rule:
                rule["for"] = (for_overrides or {}).get(rule.get("alert", ""), _scaled(rule["for"]))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    return target


def shipped_fast_rules(
    directory: Path, for_overrides: dict[str, str] | None = None, group_interval: str | None = None
) -> list[Path]:
    """alerts.yml and sites.yml as shipped, sped up, in ``directory``."""
    return [
        fast_rules(ALERTS.read_text(encoding="utf-8"), directory / "alerts.yml", for_overrides, group_interval),
        fast_rules(SITES.read_text(encoding="utf-8"), directory / "sites.yml"),
    ]


def shipped_alertmanager(webhook_url: str) -> dict[str, Any]:
    """The shipped Alertmanager config (grouping, inhibitions) with every receiver sending to ``webhook_url`` and
    its waits cut to a second."""
    config: dict[str, Any] = yaml.safe_load(ALERTMANAGER.read_text(encoding="utf-8"))
    config["receivers"] = [
        {"name": r["name"], "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}
        for r in config["receivers"]
    ]
    config["route"].update(group_wait="1s", group_interval="1s")
    return config


def fast_for(alertname: str) -> float:
    """The ``for:`` of a shipped alert (alerts.yml or sites.yml) sped up as above, in seconds."""
    for path in (ALERTS, SITES):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == alertname:
                    return float(_scaled(rule["for"])[:-1])
    raise KeyError(alertname)
