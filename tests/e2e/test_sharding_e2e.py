"""Scale-out end to end: real Prometheus with the shipped sharded config, K exporter replicas, one simulator.

The Prometheus config is deploy/prometheus/prometheus-sharded.yml with only the addresses changed:

* the http_sd URL points at replica 0's /sd (any replica serves the same list);
* the replica address ``pulsatrix-exporter-${1}.pulsatrix-exporter.monitoring.svc:9821`` becomes
  ``127.0.0.1:<prefix>${1}``: replica i listens on port ``<prefix>*10 + i``, so the shard number picks the
  replica the same way the pod ordinal does in Kubernetes;
* the targets of the self-scrape job ``pulsatrix-exporter`` (``pulsatrix-exporter-<i>.pulsatrix-exporter...``)
  become the same loopback addresses;
* the global scrape interval is shortened for the test, and the Alertmanager (a cluster name) is left out.

Every relabeling rule (hashmod, modulus, regexes) and metrics path is used exactly as shipped.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from tests.support.e2e import run_monitoring
from tests.support.servers import (
    Prometheus,
    Server,
    port_is_free,
    run_simulator,
    simulator_names,
    wait_until_ready,
    worker_ports,
    write_config_for,
)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SHARDED = ROOT / "deploy" / "prometheus" / "prometheus-sharded.yml"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
SHIPPED_ADDRESS = "pulsatrix-exporter-${1}.pulsatrix-exporter.monitoring.svc:9821"
SHIPPED_REPLICA = "pulsatrix-exporter-{}.pulsatrix-exporter.monitoring.svc:9821"
CHARGERS = 12


def hashmod(value: str, modulus: int) -> int:
    """Prometheus' hashmod: md5 of the value, the digest's last 8 bytes as a big-endian integer, mod N."""
    return int.from_bytes(hashlib.md5(value.encode()).digest()[8:], "big") % modulus  # noqa: S324


def consecutive_ports(count: int) -> int:
    """A prefix P such that the ports P*10 .. P*10+count-1 are free on loopback, from this worker's own slice of
    ports (servers.worker_ports: below the ephemeral range, so that no outgoing connection takes one meanwhile)."""
    ports = worker_ports()
    prefixes = list(range(-(-ports.start // 10), (ports.stop - count) // 10 + 1))
    for prefix in random.sample(prefixes, len(prefixes)):
        if all(port_is_free(prefix * 10 + i) for i in range(count)):
            return prefix
    raise RuntimeError(f"no run of {count} free ports in {ports.start}-{ports.stop - 1}")


@contextlib.contextmanager
def run_replica(config: Path, port: int, workdir: Path) -> Iterator[Server]:
    """One exporter replica on a given loopback port (the harness' run_exporter picks the port itself)."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "exporter.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", f"--config={config}", f"--listen=127.0.0.1:{port}"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    server = Server(f"exporter-{port}", proc, port, workdir, log)
    try:
        wait_until_ready(f"{server.url}/-/ready", proc, log)
        yield server
    finally:
        server.stop()


def sharded_config(sd_url: str, prefix: int) -> tuple[dict[str, Any], int]:
    shipped = yaml.safe_load(SHARDED.read_text(encoding="utf-8"))
    config = copy.deepcopy(shipped)
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert sorted(jobs) == ["pulsatrix", "pulsatrix-exporter"], "the probe job and the exporters' own job"
    job, own = jobs["pulsatrix"], jobs["pulsatrix-exporter"]
    job["http_sd_configs"][0]["url"] = sd_url
    (address,) = [r for r in job["relabel_configs"] if r.get("target_label") == "__address__"]
    assert address["replacement"] == SHIPPED_ADDRESS
    address["replacement"] = f"127.0.0.1:{prefix}${{1}}"
    (modulus,) = [r["modulus"] for r in job["relabel_configs"] if r.get("action") == "hashmod"]
    (static,) = own["static_configs"]
    assert static["targets"] == [SHIPPED_REPLICA.format(i) for i in range(modulus)], "one target per replica"
    static["targets"] = [f"127.0.0.1:{prefix}{i}" for i in range(modulus)]
    assert shipped["alerting"]["alertmanagers"], "the shipped config sends its alerts somewhere"
    del config["alerting"]
    # Nothing else differs from the shipped file.
    shipped_jobs = {j["job_name"]: j for j in shipped["scrape_configs"]}
    others = [r for r in job["relabel_configs"] if r is not address]
    assert others == [r for r in shipped_jobs["pulsatrix"]["relabel_configs"] if r.get("target_label") != "__address__"]
    assert own == {**shipped_jobs["pulsatrix-exporter"], "static_configs": [static]}
    assert own["metrics_path"] == "/-/metrics"
    return config, modulus


def wait_for_targets(prometheus: Prometheus, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        targets = [t for t in prometheus.targets() if t["labels"].get("job") == "pulsatrix"]
        if len(targets) >= count and all(t["health"] == "up" for t in targets):
            return targets
        if time.monotonic() > deadline:
            raise AssertionError(f"targets not all up after {timeout}s: {targets}")
        time.sleep(0.5)


def test_sharded_config_scrapes_every_charger_exactly_once_through_its_replica(tmp_path: Path) -> None:
    with run_simulator(tmp_path / "sim", chargers=CHARGERS, speed=10) as simulator:
        names = simulator_names(simulator)
        assert len(names) == CHARGERS
        config_path = write_config_for(simulator, tmp_path / "pulsatrix.yml")
        prefix = consecutive_ports(3)
        with contextlib.ExitStack() as stack:
            replicas = [
                stack.enter_context(run_replica(config_path, prefix * 10 + i, tmp_path / f"replica-{i}"))
                for i in range(3)
            ]
            config, modulus = sharded_config(f"{replicas[0].url}/sd", prefix)
            assert modulus == len(replicas)
            prometheus = stack.enter_context(run_monitoring(tmp_path, config, rule_files=[ALERTS])).prometheus

            targets = wait_for_targets(prometheus, CHARGERS)
            # Each charger is exactly one target, scraped through /probe on the replica its hash selects.
            assert sorted(t["labels"]["instance"] for t in targets) == sorted(names)
            served: dict[int, set[str]] = {i: set() for i in range(modulus)}
            for target in targets:
                url = urlsplit(target["scrapeUrl"])
                charger = target["labels"]["instance"]
                assert url.path == "/probe" and parse_qs(url.query) == {"target": [charger]}
                shard = hashmod(charger, modulus)
                assert url.port == replicas[shard].port, f"{charger}: shard {shard}, scraped via {url.netloc}"
                served[shard].add(charger)
            assert all(served.values()), f"with {CHARGERS} chargers every replica has a share: {served}"

            # One pulsatrix_up series per charger: no charger is polled twice, none is missing.
            deadline = time.monotonic() + 30
            while True:
                per_charger = prometheus.query("count by (charger) (pulsatrix_up)")
                if len(per_charger) == CHARGERS or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert sorted(s["metric"]["charger"] for s in per_charger) == sorted(names)
            assert all(s["value"][1] == "1" for s in per_charger)
            assert prometheus.query("sum(pulsatrix_up)")[0]["value"][1] == str(CHARGERS)

            # Each replica only ever contacted its own chargers; the others stay Unmonitored (not polled yet) there.
            for shard, replica in enumerate(replicas):
                page = urllib_text(f"{replica.url}/")
                for charger in names:
                    row = re.search(rf"target={re.escape(charger)}'.*?</tr>", page)
                    assert row, charger
                    scraped = ">Unmonitored</td>" not in row.group(0)
                    assert scraped == (charger in served[shard]), f"replica {shard}, {charger}"

            # The exporters' own job: every replica is a target of its own, up, with its build info.
            own = wait_for_series(prometheus, 'up{job="pulsatrix-exporter"} == 1', len(replicas))
            instances = [f"127.0.0.1:{replica.port}" for replica in replicas]
            assert sorted(s["metric"]["instance"] for s in own) == sorted(instances)
            own_targets = [t for t in prometheus.targets() if t["labels"].get("job") == "pulsatrix-exporter"]
            assert sorted(urlsplit(t["scrapeUrl"]).path for t in own_targets) == ["/-/metrics"] * len(replicas)
            info = wait_for_series(prometheus, 'pulsatrix_exporter_build_info{job="pulsatrix-exporter"}', len(replicas))
            assert sorted(s["metric"]["instance"] for s in info) == sorted(instances)
            # /-/metrics polls no charger: the exporters' job carries no charger series.
            assert prometheus.query('count(pulsatrix_up{job="pulsatrix-exporter"})') == []

            # A replica that stops stays a target of that job, with up == 0 (what PulsatrixExporterDown watches).
            replicas[-1].stop()
            down = wait_for_series(prometheus, 'up{job="pulsatrix-exporter"} == 0', 1)
            assert [s["metric"]["instance"] for s in down] == [instances[-1]]
            assert len(prometheus.query('up{job="pulsatrix-exporter"}')) == len(replicas)


def wait_for_series(prometheus: Prometheus, expr: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Poll ``expr`` until it returns exactly ``count`` series; fail with what it returned last."""
    deadline = time.monotonic() + timeout
    while True:
        result = prometheus.query(expr)
        if len(result) == count:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{expr!r}: {len(result)} series after {timeout}s, expected {count}: {result}")
        time.sleep(0.5)


def urllib_text(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback test server
        text: str = response.read().decode()
    return text
