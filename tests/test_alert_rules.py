"""The shipped alert rules: valid for Prometheus, unit-tested with promtool, and consistent with the README and
the metric catalogue (a renamed metric or a missing runbook fails here, not at 3 a.m.)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from exporter.catalogue import BY_NAME
from exporter.scrape.results import REASONS
from grafana.vocabulary import EXPORTER_REASONS, EXPORTER_REASONS_RE
from tests.support.docs import anchors, doc_section, documentation, page_with
from tests.support.servers import promtool

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
SITES = ROOT / "deploy" / "prometheus" / "sites.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yml"
ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
# The runbook base of CONFIG: the runbooks page shipped with the exporter, as a relative link (no invented address).
RUNBOOK_PAGE = page_with("Alert runbooks")
RUNBOOK_BASE = f"{RUNBOOK_PAGE.relative_to(ROOT)}#"
SEVERITIES = {"critical", "warning", "info"}
# Labels every device series has besides the catalogue's own (the extra labels are the user's and vary).
COMMON_LABELS = {"charger", "instance", "job"}
# The job names of docs/deployment.md, "Prometheus configuration": the exporter processes, and the /probe job of
# chargers.
EXPORTER_JOB, PROBE_JOB = "pulsatrix-exporter", "pulsatrix"


def load_rules(path: Path = RULES) -> list[dict[str, Any]]:
    document = yaml.safe_load(path.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


ALERTS = [rule for rule in load_rules() if "alert" in rule]
ALERT_NAMES = [rule["alert"] for rule in ALERTS]
RECORDED = {rule["record"] for path in (RULES, SITES) for rule in load_rules(path) if "record" in rule}
CHARGER_DASHBOARD = "/d/pulsatrix-charger?"
# Alerts about a charger that keep firing while its series are stale (the others are about the staleness itself,
# or clear by themselves).
NOT_HELD = {"PulsatrixChargerUnmonitored", "PulsatrixProbeFailing", "PulsatrixEnergyMeterWentBackwards",
            "PulsatrixApiLimitFlapping"}  # fmt: skip


def load_generator() -> ModuleType:
    """deploy.prometheus.generate_rules, the rules' generator (``python -m deploy.prometheus.generate_rules``)."""
    return importlib.import_module("deploy.prometheus.generate_rules")


def duration_seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a Prometheus duration: {text!r}"
    return sum(int(n) * units[u] for n, u in parts)


def is_exporter_level(rule: dict[str, Any]) -> bool:
    """Alerts about the exporter process itself have no charger to name."""
    return "pulsatrix_" not in rule["expr"] and "pulsatrix:" not in rule["expr"]


def is_exporter_side(rule: dict[str, Any]) -> bool:
    """Alerts about the fetches the exporter failed itself (grafana.vocabulary.EXPORTER_REASONS) name the reason
    and the job, not a charger or a site: one alert however many chargers it hits."""
    return EXPORTER_REASONS_RE in rule["expr"] and "$labels.reason" in rule["annotations"]["summary"]


def is_charger_level(rule: dict[str, Any]) -> bool:
    """Alerts about one charger link to its detail dashboard (site and exporter alerts to the fleet view)."""
    return CHARGER_DASHBOARD in rule["annotations"]["dashboard_url"]


def is_absence(rule: dict[str, Any]) -> bool:
    """absent() alerts: their value is always 1, so there is nothing to show."""
    return bool(re.fullmatch(r"absent\(.*\)", rule["expr"].strip(), re.DOTALL))


def rule_named(name: str) -> dict[str, Any]:
    (rule,) = [rule for rule in ALERTS if rule["alert"] == name]
    return rule


def readme_section(title: str) -> str:
    return doc_section(title)


@pytest.mark.e2e
def test_promtool_check_rules_accepts_the_file() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(load_rules())} rules found" in result.stdout, result.stdout
    result = promtool("check", "rules", str(SITES))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.e2e
def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout


def test_rule_tests_load_the_shipped_rules() -> None:
    document = yaml.safe_load(RULE_TESTS.read_text())
    assert [(RULE_TESTS.parent / name).resolve() for name in document["rule_files"]] == [RULES, SITES]


def test_committed_rules_equal_the_generated_ones() -> None:
    assert RULES.read_text() == load_generator().render(), "run python -m deploy.prometheus.generate_rules"


@pytest.mark.e2e
def test_job_selectors_and_site_label_come_from_one_config_block(tmp_path: Path) -> None:
    """Other job names: change CONFIG, and no rule selects the old names any more (and promtool still accepts it)."""
    text = load_generator().render(
        {"exporter_selector": 'job="exporters"', "probe_selector": 'job="chargers"', "site": "location"}
    )
    assert 'job="pulsatrix-exporter"' not in text and 'job="pulsatrix"' not in text
    assert 'up{job="exporters"}' in text and 'up{job="chargers"}' in text
    assert "by (location)" in text and "by (site)" not in text
    (tmp_path / "alerts.yml").write_text(text)
    result = promtool("check", "rules", str(tmp_path / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_runbook_and_dashboard_addresses_come_from_the_config_block() -> None:
    assert load_generator().CONFIG["runbook_url"] == RUNBOOK_BASE
    text = load_generator().render(
        {"runbook_url": "https://wiki.example/README.md#", "grafana_url": "https://g.example"}
    )
    alerts = [rule for group in yaml.safe_load(text)["groups"] for rule in group["rules"] if "alert" in rule]
    assert len(alerts) == len(ALERTS)
    for rule in alerts:
        annotations = rule["annotations"]
        assert annotations["runbook_url"] == "https://wiki.example/README.md#" + rule["alert"].lower()
        assert annotations["dashboard_url"].startswith("https://g.example/d/pulsatrix-"), annotations
    assert "github.com" not in RULES.read_text()


def test_recording_rules_used_by_the_alerts_are_recorded() -> None:
    used = {name for rule in ALERTS for name in re.findall(r"\bpulsatrix:[a-z0-9_:]+", rule["expr"])}
    assert used and used <= RECORDED, sorted(used - RECORDED)


def test_alert_names_are_unique() -> None:
    assert len(ALERT_NAMES) == len(set(ALERT_NAMES)), ALERT_NAMES


@pytest.mark.parametrize("rule", ALERTS, ids=ALERT_NAMES)
def test_alert_has_severity_for_and_annotations(rule: dict[str, Any]) -> None:
    assert rule.get("labels", {}).get("severity") in SEVERITIES
    # Long enough to ride out a missed scrape (several at the usual 15 s interval).
    assert duration_seconds(rule.get("for", "0s")) >= 60, f"{rule['alert']}: for: {rule.get('for')}"
    annotations = rule.get("annotations", {})
    assert set(annotations) >= {"summary", "description", "runbook_url", "dashboard_url"}, annotations
    if not is_absence(rule):
        assert "$value" in annotations["description"], annotations["description"]
    if is_charger_level(rule):
        assert "$labels.charger" in annotations["summary"], annotations["summary"]
        assert "$labels.charger" in annotations["description"], annotations["description"]
        assert "var-charger={{ $labels.charger | urlquery }}" in annotations["dashboard_url"]
    elif is_exporter_side(rule):
        assert "$labels.job" in annotations["description"], annotations["description"]
    elif not is_exporter_level(rule):
        assert "$labels.site" in annotations["summary"] and "$labels.site" in annotations["description"]


@pytest.mark.parametrize("rule", [r for r in ALERTS if is_charger_level(r)], ids=lambda r: r["alert"])
def test_charger_alerts_keep_firing_while_the_charger_is_unmonitored(rule: dict[str, Any]) -> None:
    """A stopped exporter must not resolve them: stale series are no proof that the fault has gone."""
    held = f'ALERTS{{alertname="{rule["alert"]}", alertstate="firing"}}' in rule["expr"]
    assert held == (rule["alert"] not in NOT_HELD), rule["expr"]


@pytest.mark.parametrize("rule", ALERTS, ids=ALERT_NAMES)
def test_runbook_url_points_to_a_runbook_in_the_readme(rule: dict[str, Any]) -> None:
    url: str = rule["annotations"]["runbook_url"]
    assert url.startswith(RUNBOOK_BASE), url
    anchor = url.removeprefix(RUNBOOK_BASE)
    assert anchor in anchors(RUNBOOK_PAGE), f"{RUNBOOK_PAGE.name} has no heading with anchor #{anchor}"


def test_every_alert_is_in_the_readme_table() -> None:
    text = documentation()
    missing = [name for name in ALERT_NAMES if f"| `{name}` |" not in text]
    assert not missing, f"README's alert table lacks {missing}"


def test_every_alert_has_a_firing_and_a_silent_promtool_case() -> None:
    document = yaml.safe_load(RULE_TESTS.read_text())
    firing: set[str] = set()
    silent: set[str] = set()
    for case in document["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    assert set(ALERT_NAMES) - firing == set(), "alerts without a promtool case where they fire"
    assert set(ALERT_NAMES) - silent == set(), "alerts without a promtool case where they stay silent"
    assert firing | silent <= set(ALERT_NAMES), "promtool cases for alerts that do not exist"


def _pulsatrix_texts(rule: dict[str, Any]) -> str:
    """The expression plus the annotations (templates may query metrics too)."""
    return "\n".join([rule["expr"], *rule.get("annotations", {}).values()])


@pytest.mark.parametrize("rule", ALERTS, ids=ALERT_NAMES)
def test_metric_names_and_labels_exist_in_the_catalogue(rule: dict[str, Any]) -> None:
    text = _pulsatrix_texts(rule)
    names = set(re.findall(r"\bpulsatrix_[a-z0-9_]+", text))
    assert names <= set(BY_NAME), f"{rule['alert']}: unknown metrics {sorted(names - set(BY_NAME))}"
    for name, matchers in re.findall(r"\b(pulsatrix_[a-z0-9_]+)\{([^}]*)\}", text):
        labels = set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
        allowed = COMMON_LABELS | set(BY_NAME[name].labels)
        assert labels <= allowed, f"{rule['alert']}: {name} has no label(s) {sorted(labels - allowed)}"


def test_exporter_level_alerts_select_the_documented_jobs_exactly() -> None:
    """No `job=~"pulsatrix.*"`: that matches the /probe job too, whose targets are chargers, so an exporter alert
    would fire once per charger (and name a charger as the exporter)."""
    for rule in ALERTS:
        if not is_exporter_level(rule):
            continue
        expr = rule["expr"]
        assert "job=~" not in expr and "job!~" not in expr, f"{rule['alert']}: job selected by regex: {expr}"
        jobs = set(re.findall(r'job="([^"]*)"', expr))
        assert jobs and jobs <= {EXPORTER_JOB, PROBE_JOB}, f"{rule['alert']}: jobs {sorted(jobs)}"
    assert re.findall(r'job="([^"]*)"', rule_named("PulsatrixExporterDown")["expr"]) == [EXPORTER_JOB] * 2


def test_the_documented_prometheus_configs_use_the_job_names_the_alerts_select() -> None:
    section = readme_section("Prometheus configuration")
    jobs: list[set[str]] = []
    for block in re.findall(r"```yaml\n(.*?)```", section, re.DOTALL):
        document = yaml.safe_load(block)
        jobs.append({job["job_name"] for job in document.get("scrape_configs", [])})
    # Single-job mode (the exporter is the target) and the /probe job beside the exporter's /-/metrics.
    assert {EXPORTER_JOB} in jobs, jobs
    assert {EXPORTER_JOB, PROBE_JOB} in jobs, jobs


def test_absent_alert_watches_the_series_exporter_down_fires_on() -> None:
    """Together they cover "a target is down" and "there is no target": the same `up` selector in both."""
    absent = rule_named("PulsatrixExporterAbsent")
    assert is_absence(absent)
    (selector,) = re.findall(r"absent\((up\{[^}]*\})\)", absent["expr"])
    assert f"({selector} == 0)" in rule_named("PulsatrixExporterDown")["expr"]
    assert absent["labels"]["severity"] == "critical"


def test_probe_failing_is_quiet_while_an_exporter_is_down() -> None:
    """Otherwise a replica that is down raises one alert per charger it serves, on top of PulsatrixExporterDown."""
    expr = " ".join(rule_named("PulsatrixProbeFailing")["expr"].split())
    assert f'up{{job="{PROBE_JOB}"}} == 0' in expr
    assert expr.count(f'unless on () (up{{job="{EXPORTER_JOB}"}} == 0)') == 2, expr


def test_alertmanager_groups_by_site_and_only_no_data_alerts_mute_readings() -> None:
    config = yaml.safe_load(ALERTMANAGER.read_text())
    assert set(config["route"]["group_by"]) == {"alertname", "site"}
    severity_targets = set()
    for rule in config["inhibit_rules"]:
        (source,) = rule["source_matchers"]
        name = re.fullmatch(r'alertname="(\w+)"', source)
        assert name and name.group(1) in ALERT_NAMES, source
        if any(m.startswith("severity") for m in rule["target_matchers"]):
            severity_targets.add(name.group(1))
    # A charger that answers on some endpoints has partial data: its alert must never mute readings alerts.
    assert severity_targets == {"PulsatrixChargerDown", "PulsatrixExporterDown"}
    assert rule_named("PulsatrixEndpointFailing")["labels"]["severity"] == "warning"
    assert rule_named("PulsatrixSiteDown")["labels"]["severity"] == "critical"


def test_the_exporter_side_reasons_are_reasons_the_exporter_gives() -> None:
    assert set(EXPORTER_REASONS) <= set(REASONS)
    assert {"throttled", "exporter_error", "exporter_fds", "scrape_timeout"} == set(EXPORTER_REASONS)
