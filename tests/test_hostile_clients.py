"""Round three of the hostile network (issue 26), the port's side: busy clients of one address cannot starve the
port, a refused connection logs no traceback, an /sd-sharded replica's default cap follows its share. The exporter
and simulator as processes on loopback; every client bounded."""

from __future__ import annotations

import asyncio
import resource
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import yaml

from exporter.serve.server import client_key
from tests.support.samples import get, parse
from tests.support.servers import http_get_text, run_exporter, run_simulator, set_fault, simulator_names

HOGS = 300
PROBES = 30


async def get_once(port: int, path: str, source: str = "127.0.0.1", within: float = 10.0) -> tuple[int, str]:
    """One GET on a connection of its own from ``source``: (status, body), or (0, "") when the connection was
    refused or cut."""
    try:
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
            try:
                writer.write(f"GET {path} HTTP/1.1\r\nHost: exporter\r\nConnection: close\r\n\r\n".encode())
                raw = await reader.read()
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return 0, ""
    head, _, body = raw.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1] if head.startswith(b"HTTP/1.1 ") else b"0"
    return int(status), body.decode(errors="replace")


async def test_300_busy_clients_of_one_address_cannot_keep_a_scraper_out(tmp_path: Path) -> None:
    with run_simulator(tmp_path / "sim", chargers=2) as simulator:
        hung, healthy = simulator_names(simulator)
        set_fault(simulator, hung, "hang")
        config = tmp_path / "pulsatrix.yml"
        chargers = [{"name": n, "url": f"{simulator.url}/{n}"} for n in (hung, healthy)]
        config.write_text(yaml.safe_dump({"timeout": 3, "chargers": chargers}))
        with run_exporter(config, tmp_path / "exporter") as exporter:
            stop = asyncio.Event()

            async def hog() -> None:
                while not stop.is_set():  # re-requests the hung charger as soon as it has an answer (or none)
                    status, _ = await get_once(exporter.port, f"/probe?target={hung}", within=5)
                    if status == 0:
                        await asyncio.sleep(0.05)

            hogs = [asyncio.create_task(hog()) for _ in range(HOGS)]
            await asyncio.sleep(2.0)  # every one of the 256 connections busy
            through = 0
            for _ in range(PROBES):  # Prometheus, from another address
                status, body = await get_once(exporter.port, f"/probe?target={healthy}", source="127.0.0.2")
                if status == 200 and get(parse(body), "pulsatrix_up", charger=healthy) == 1.0:
                    through += 1
                await asyncio.sleep(0.1)
            stop.set()
            await asyncio.gather(*hogs)
            own = parse(http_get_text(f"{exporter.url}/-/metrics"))
            log = exporter.log.read_text()
    assert through >= 0.9 * PROBES, f"{through} of {PROBES} probes got through"
    refused = get(own, "pulsatrix_exporter_connections_refused_total")
    assert refused is not None and refused > 0
    assert "Traceback" not in log and "Task exception was never retrieved" not in log
    assert log.count("connection cap of 256 reached") == 1, "once a minute, with a count"


def limit_fds() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


async def test_a_sharded_replicas_default_cap_follows_the_chargers_it_polls(tmp_path: Path) -> None:
    """5,000 configured chargers under 1,024 fds left a cap of 16 however few of them the replica was asked for:
    50 concurrent probes of its one charger (a hung one) were mostly refused."""
    with run_simulator(tmp_path / "sim", chargers=1) as simulator:
        (hung,) = simulator_names(simulator)
        set_fault(simulator, hung, "hang")
        chargers = [{"name": hung, "url": f"{simulator.url}/{hung}"}]
        chargers += [{"name": f"elsewhere-{i}", "url": f"http://192.0.2.1/{i}"} for i in range(4999)]
        config = tmp_path / "pulsatrix.yml"
        config.write_text(yaml.safe_dump({"timeout": 2, "chargers": chargers}))
        with run_exporter(config, tmp_path / "exporter", preexec_fn=limit_fds) as exporter:
            started = time.monotonic()
            answers = await asyncio.gather(*(get_once(exporter.port, f"/probe?target={hung}") for _ in range(50)))
            took = time.monotonic() - started
            own = parse(http_get_text(f"{exporter.url}/-/metrics"))
    assert [status for status, _ in answers] == [200] * 50
    assert all(get(parse(body), "pulsatrix_up", charger=hung) == 0.0 for _, body in answers)
    assert get(own, "pulsatrix_exporter_connections_refused_total") == 0.0
    assert took < 15


def test_an_ipv6_client_is_budgeted_by_its_64() -> None:
    def key(host: str) -> str:
        return client_key(SimpleNamespace(get_extra_info=lambda _: (host, 1234)))  # type: ignore[arg-type]

    assert key("2001:db8:1:2::1") == key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert key("2001:db8:1:3::1") != key("2001:db8:1:2::1")
    assert key("::ffff:192.0.2.7") == key("192.0.2.7") == "192.0.2.7"
    assert key("fe80::1%eth0") == "fe80::/64"


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def peak_rss_during(pid: int, work: asyncio.Future[Any]) -> int:
    peak = rss_bytes(pid)
    while not work.done():
        peak = max(peak, rss_bytes(pid))
        await asyncio.sleep(0.02)
    await work
    return max(peak, rss_bytes(pid))


async def test_concurrent_scrapes_and_clients_that_never_read_do_not_multiply_memory(tmp_path: Path) -> None:
    """300 chargers, 90 of them hung: 100 concurrent /metrics, then 100 clients that send /metrics and never read
    the reply. Each raises the exporter's RSS by less than 60 MiB."""
    with run_simulator(tmp_path / "sim", chargers=300) as simulator:
        names = simulator_names(simulator)
        for name in names[:90]:
            set_fault(simulator, name, "hang")
        config = tmp_path / "pulsatrix.yml"
        chargers = [{"name": n, "url": f"{simulator.url}/{n}"} for n in names]
        config.write_text(yaml.safe_dump({"timeout": 2, "chargers": chargers}))
        with run_exporter(config, tmp_path / "exporter") as exporter:
            pid = exporter.proc.pid
            path = "/metrics"
            for _ in range(2):  # warm: connections, caches, the allocator's arenas
                status, _ = await get_once(exporter.port, path)
                assert status == 200
            baseline = rss_bytes(pid)
            storm = asyncio.gather(*(get_once(exporter.port, path) for _ in range(100)))
            peak = await peak_rss_during(pid, storm)
            assert [status for status, _ in storm.result()] == [200] * 100
            assert peak - baseline < 60 << 20, f"100 concurrent scrapes: +{(peak - baseline) >> 20} MiB"

            silent: list[asyncio.StreamWriter] = []
            for _ in range(100):
                _, writer = await asyncio.open_connection("127.0.0.1", exporter.port, limit=1024)
                cast(asyncio.ReadTransport, writer.transport).pause_reading()  # never reads a byte of the reply
                writer.write(f"GET {path} HTTP/1.1\r\nHost: exporter\r\n\r\n".encode())
                silent.append(writer)
            waiting = asyncio.ensure_future(asyncio.sleep(4.0))  # the chargers' 2 s, and the replies written
            peak = await peak_rss_during(pid, waiting)
            for writer in silent:
                writer.close()
            assert peak - baseline < 60 << 20, f"100 clients that never read: +{(peak - baseline) >> 20} MiB"
