"""The Prometheus config for a host install (deploy/prometheus/prometheus-host.yml) works as written: Debian's
Prometheus started with it and the three rule files beside it, as /etc/prometheus holds them, loads every rule and
scrapes every charger of a real exporter through /probe. Only the two ports are changed, because the test cannot
own 9821 and 9093 on a shared machine."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.servers import free_port, run_exporter, run_prometheus, run_simulator, write_config_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
HOST_CONFIG = PROMETHEUS_DIR / "prometheus-host.yml"
RULE_FILES = ("alerts.yml", "sites.yml", "ledger.yml")
FAST = {"interval: 15s": "interval: 1s", "interval: 30s": "interval: 1s", "timeout: 10s": "timeout: 1s"}


def test_the_host_config_loads_its_rules_and_scrapes_every_charger(tmp_path: Path) -> None:
    etc = tmp_path / "etc-prometheus"
    etc.mkdir()
    for name in RULE_FILES:
        shutil.copyfile(PROMETHEUS_DIR / name, etc / name)
    with run_simulator(tmp_path / "sim", chargers=3) as simulator:
        config = write_config_for(simulator, tmp_path / "exporter.yml", timeout=2.0)
        with run_exporter(config, tmp_path / "exporter") as exporter:
            text = HOST_CONFIG.read_text(encoding="utf-8")
            assert text.count("localhost:9821") == 3 and text.count("localhost:9093") == 2
            text = text.replace("localhost:9821", f"127.0.0.1:{exporter.port}")
            text = text.replace("localhost:9093", f"127.0.0.1:{free_port()}")  # no Alertmanager: alerts just queue
            for slow, fast in FAST.items():
                text = text.replace(slow, fast)
            with run_prometheus(text, etc) as prometheus:
                up = prometheus.wait_for('count(up{job="pulsatrix"} == 1) == 3', timeout=60)
                assert up[0]["value"][1] == "3"
                prometheus.wait_for('up{job="pulsatrix-exporter"} == 1', timeout=30)
                groups = prometheus.get("/api/v1/rules")["data"]["groups"]
                files = {Path(group["file"]).name for group in groups}
                assert files == set(RULE_FILES)
                assert all(group["rules"] for group in groups)
