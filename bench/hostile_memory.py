"""The exporter's memory under hostile clients (issue 26), for the Kubernetes memory request and limit.

    .venv/bin/python bench/hostile_memory.py                        # N = 500 and 2,500 chargers
    .venv/bin/python bench/hostile_memory.py --sizes 300 --out /tmp/hm   # quicker

One simulator process (``pulsatrix-exporter simulate --faults``) serves N chargers, 30 % of them hung; one
exporter process polls them (timeout 3 s). Each scenario runs after two warm-up scrapes and records the exporter's
peak RSS (/proc, sampled every 20 ms) and its RSS at the end:

* ``steady``: 5 ``/metrics`` scrapes one after another, with Prometheus' headers (gzip, a 10 s scrape timeout);
* ``metrics x100``: 100 concurrent ``/metrics``;
* ``unread x256``: 256 clients that send ``/metrics`` and never read the reply (as many as the default cap);
* ``probes x200``: 200 concurrent ``/probe`` of hung chargers (one per charger, or round the hung ones), with a
  ``/metrics`` beside them;
* ``status x50``: 50 concurrent status pages, gzipped.

Writes ``hostile-memory.json`` and ``hostile-memory.md`` to ``--out`` (``docs/benchmark`` by default).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS = {"Accept-Encoding": "gzip", "X-Prometheus-Scrape-Timeout-Seconds": "10"}
HUNG_SHARE = 0.3


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the process ended ({proc.returncode})")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310
            if response.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url}: not ready after 120 s")


@contextlib.contextmanager
def process(args: list[str], ready: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "exporter", *args], stdout=out, stderr=out, cwd=ROOT)
        try:
            wait_ready(ready, proc)
            yield proc
        finally:
            proc.terminate()
            proc.wait(15)


async def request(port: int, path: str, headers: dict[str, str], read: bool = True) -> int:
    """One GET on a connection of its own; the status (0: refused or cut). With ``read`` False the client sends the
    request and never reads a byte (it is closed by the caller's cancel)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1024)
    except OSError:
        return 0
    try:
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(f"GET {path} HTTP/1.1\r\nHost: exporter\r\nConnection: close\r\n{lines}\r\n".encode())
        if not read:
            writer.transport.pause_reading()  # type: ignore[attr-defined]
            await asyncio.Event().wait()
        head = await reader.readline()
        await reader.read()
        return int(head.split()[1]) if head.startswith(b"HTTP/1.1 ") else 0
    except (OSError, ValueError, IndexError):
        return 0
    finally:
        writer.close()


async def peak_during(pid: int, work: Awaitable[Any]) -> tuple[int, Any]:
    task = asyncio.ensure_future(work)
    peak = rss_bytes(pid)
    while not task.done():
        peak = max(peak, rss_bytes(pid))
        await asyncio.sleep(0.02)
    return max(peak, rss_bytes(pid)), task.result()


async def scenarios(pid: int, port: int, hung: list[str]) -> dict[str, dict[str, float]]:
    async def steady() -> None:
        for _ in range(5):
            await request(port, "/metrics", PROMETHEUS)

    async def metrics_storm() -> None:
        await asyncio.gather(*(request(port, "/metrics", PROMETHEUS) for _ in range(100)))

    async def unread() -> None:
        clients = [asyncio.ensure_future(request(port, "/metrics", {}, read=False)) for _ in range(256)]
        await asyncio.sleep(6.0)  # the chargers' 3 s, then the replies written as far as they go
        for client in clients:
            client.cancel()
        await asyncio.gather(*clients, return_exceptions=True)

    async def probes() -> None:
        targets = [hung[i % len(hung)] for i in range(200)]
        storm = [request(port, f"/probe?target={t}", PROMETHEUS) for t in targets]
        await asyncio.gather(*storm, request(port, "/metrics", PROMETHEUS))

    async def status() -> None:
        await asyncio.gather(*(request(port, "/", {"Accept-Encoding": "gzip"}) for _ in range(50)))

    runs: dict[str, Callable[[], Awaitable[None]]] = {
        "steady": steady,
        "metrics x100": metrics_storm,
        "unread x256": unread,
        "probes x200": probes,
        "status x50": status,
    }
    out: dict[str, dict[str, float]] = {}
    for name, run in runs.items():
        before = rss_bytes(pid)
        peak, _ = await peak_during(pid, run())
        out[name] = {"before_mib": before / 2**20, "peak_mib": peak / 2**20, "after_mib": rss_bytes(pid) / 2**20}
        print(f"  {name}: {out[name]}", flush=True)
    return out


def one_size(n: int, workdir: Path) -> dict[str, Any]:
    sim_port, port = free_port(), free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    sim_args = ["simulate", f"--listen=127.0.0.1:{sim_port}", f"--chargers={n}", "--faults", "--log-level=warning"]
    with process(sim_args, f"{sim_url}/_sim", workdir / f"sim-{n}.log"):
        with urllib.request.urlopen(f"{sim_url}/_sim", timeout=30) as response:  # noqa: S310
            names = [c["name"] for c in json.load(response)]
        hung = names[: int(n * HUNG_SHARE)]
        for name in hung:
            body = json.dumps({"fault": "hang"}).encode()
            put = urllib.request.Request(f"{sim_url}/_sim/{name}", data=body, method="PUT")  # noqa: S310
            urllib.request.urlopen(put, timeout=10).close()  # noqa: S310
        config = workdir / f"config-{n}.yml"
        lines = ["timeout: 3", "chargers:"] + [f"  - {{name: {c}, url: '{sim_url}/{c}'}}" for c in names]
        config.write_text("\n".join(lines) + "\n")
        args = [f"--config={config}", f"--listen=127.0.0.1:{port}", "--log-level=warning"]
        with process(args, f"http://127.0.0.1:{port}/-/ready", workdir / f"exporter-{n}.log") as exporter:

            async def measure() -> dict[str, dict[str, float]]:
                for _ in range(2):
                    await request(port, "/metrics", PROMETHEUS)
                return await scenarios(exporter.pid, port, hung)

            print(f"N = {n}", flush=True)
            results = asyncio.run(measure())
    worst = max(r["peak_mib"] for r in results.values())
    return {"chargers": n, "hung": len(hung), "scenarios": results, "worst_peak_mib": worst}


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "# Exporter memory under hostile clients (bench/hostile_memory.py)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{int(HUNG_SHARE * 100)} % of the chargers hung, timeout 3 s. RSS of the exporter process in MiB: before "
        "each scenario, its peak, and after it.",
        "",
        "| chargers | scenario | before | peak | after |",
        "|---:|---|---:|---:|---:|",
    ]
    for row in rows:
        for name, r in row["scenarios"].items():
            lines.append(
                f"| {row['chargers']:,} | {name} | {r['before_mib']:.0f} | {r['peak_mib']:.0f} | {r['after_mib']:.0f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="500,2500", help="charger counts (500,2500)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmark", help="where the results go")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="hostile-memory-") as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            rows.append(one_size(n, Path(tmp)))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hostile-memory.json").write_text(json.dumps(rows, indent=1) + "\n")
    (args.out / "hostile-memory.md").write_text(markdown(rows))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
