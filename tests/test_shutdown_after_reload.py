"""SIGTERM lets the scrapes in flight finish even after a reload gave the chargers longer timeouts."""

from __future__ import annotations

import signal
import threading
import time
import urllib.request
from pathlib import Path

from tests.support.servers import put_json, run_exporter, run_simulator, simulator_names, write_config_for


def test_sigterm_waits_for_a_scrape_whose_timeout_a_reload_raised(tmp_path: Path) -> None:
    with run_simulator(tmp_path / "sim", chargers=1) as simulator:
        path = write_config_for(simulator, tmp_path / "pulsatrix.yml", timeout=1.0)
        name = simulator_names(simulator)[0]
        with run_exporter(path, tmp_path / "exporter") as exporter:
            path.write_text(path.read_text().replace("timeout: 1.0", "timeout: 9.0"))
            exporter.proc.send_signal(signal.SIGHUP)
            for _ in range(100):  # bounded: 10 s
                if "config reloaded" in exporter.log.read_text():
                    break
                time.sleep(0.1)
            assert "default timeout 9s" in exporter.log.read_text()
            assert put_json(f"{simulator.url}/_sim/{name}", {"fault": "latency", "seconds": 7.5}) == 200
            result: dict[str, object] = {}

            def scrape() -> None:
                try:
                    with urllib.request.urlopen(f"{exporter.url}/probe?target={name}", timeout=20) as response:  # noqa: S310
                        result["status"], result["body"] = response.status, response.read().decode()
                except OSError as exc:
                    result["error"] = repr(exc)

            scraper = threading.Thread(target=scrape)
            scraper.start()
            time.sleep(1.0)  # the scrape waits for the slow charger
            exporter.proc.send_signal(signal.SIGTERM)
            scraper.join(timeout=30)
            assert exporter.proc.wait(timeout=30) == 0
        assert result.get("status") == 200, result
        assert f'pulsatrix_up{{charger="{name}"}} 1.0' in str(result["body"]), "the scrape in flight finished"
