"""The long-term store and the ledger rules in deploy/: the longterm profile, the VictoriaMetrics scrape config,
the ledger's recording rules under promtool and vmalert."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support.servers import find_binary, promtool

ROOT = Path(__file__).resolve().parents[1]
PROM = ROOT / "deploy" / "prometheus"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_longterm_config_is_the_stack_config_plus_remote_write_into_victoriametrics() -> None:
    base, longterm = load(PROM / "prometheus.yml"), load(PROM / "prometheus-longterm.yml")
    assert longterm.pop("remote_write") == [{"url": "http://victoriametrics:8428/api/v1/write"}]
    assert longterm == base


def test_compose_longterm_profile_keeps_years_in_victoriametrics() -> None:
    compose = load(ROOT / "deploy" / "docker-compose.yml")
    vm = compose["services"]["victoriametrics"]
    assert vm["profiles"] == ["longterm"]
    assert "-retentionPeriod=10y" in vm["command"] and "-httpListenAddr=:8428" in vm["command"]
    # an HA pair's two copies become one series with one sample per scrape interval
    assert {"-relabelConfig=/etc/victoriametrics/relabel.yml", "-dedup.minScrapeInterval=15s"} <= set(vm["command"])
    assert "./victoriametrics/relabel.yml:/etc/victoriametrics/relabel.yml:ro" in vm["volumes"]
    assert load(ROOT / "deploy" / "victoriametrics" / "relabel.yml") == [
        {"action": "labeldrop", "regex": "prometheus_replica|replica"}
    ]
    prom = compose["services"]["prometheus"]
    assert "--storage.tsdb.retention.time=400d" in prom["command"]  # a year's report, some weeks into the next
    assert "--config.file=/etc/prometheus/${PROMETHEUS_CONFIG:-prometheus.yml}" in prom["command"]
    mounted = {v.split(":")[1] for v in prom["volumes"] if v.startswith("./")}
    assert {"/etc/prometheus/prometheus-longterm.yml", "/etc/prometheus/ledger.yml"} <= mounted


def test_promtool_accepts_the_longterm_config_and_the_ledger_rules_pass_their_tests(tmp_path: Path) -> None:
    for name in ("alerts.yml", "sites.yml", "ledger.yml"):
        shutil.copyfile(PROM / name, tmp_path / name)
    text = (PROM / "prometheus-longterm.yml").read_text(encoding="utf-8").replace("/etc/prometheus/", "")
    (tmp_path / "prometheus.yml").write_text(text, encoding="utf-8")
    result = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    result = promtool("test", "rules", "ledger.test.yml", cwd=PROM)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def _vm(binary: str) -> str:
    return find_binary(binary)  # skips, or fails under PULSATRIX_REQUIRE_E2E=1 (Debian package victoria-metrics)


def test_victoriametrics_scrape_config_is_the_pulsatrix_jobs_its_strict_parser_accepts() -> None:
    vm = _vm("victoria-metrics")
    shipped = load(ROOT / "deploy" / "victoriametrics" / "scrape.yml")
    base = load(PROM / "prometheus.yml")
    jobs = [copy.deepcopy(j) for j in base["scrape_configs"] if j["job_name"].startswith("pulsatrix")]
    for job in jobs:
        for sd in job.get("http_sd_configs", []):
            sd.pop("refresh_interval", None)
    assert shipped["scrape_configs"] == jobs
    assert shipped["global"] == {k: v for k, v in base["global"].items() if k != "evaluation_interval"}

    def dry_run(path: Path) -> subprocess.CompletedProcess[str]:
        cmd = [vm, f"-promscrape.config={path}", "-promscrape.config.dryRun", "-loggerLevel=ERROR"]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)

    assert dry_run(ROOT / "deploy" / "victoriametrics" / "scrape.yml").returncode == 0
    refused = dry_run(PROM / "prometheus.yml")  # why the variant exists
    assert refused.returncode != 0 and "field refresh_interval not found" in refused.stderr


def test_every_shipped_rule_file_passes_vmalert_dry_run() -> None:
    vmalert = _vm("vmalert")
    rules = [f"-rule={PROM / name}" for name in ("alerts.yml", "sites.yml", "ledger.yml")]
    result = subprocess.run(
        [vmalert, *rules, "-dryRun", "-loggerLevel=ERROR"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
