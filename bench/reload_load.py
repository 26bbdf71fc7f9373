"""Reloading a 10,000-charger config while it is scraped (issue 20): how long ``POST /-/reload`` takes and whether a
scrape fails meanwhile.

    .venv/bin/python bench/reload_load.py                 # 10,000 chargers, 5 reloads
    .venv/bin/python bench/reload_load.py --chargers 2000 --reloads 2

The config is bench/config_load.py's (labels and basic auth on every charger), except that its first 200
chargers are simulated ones that answer (bench/harness.py's fleet); the others point at a closed loopback port
and are never polled (nothing probes them). A scraper probes the 200 live chargers, 20 at a time, back to back,
while the file is rewritten (a new label value, so every charger changes) and reloaded, one reload after another.
Prints each reload's wall time and the exporter's CPU time during it, the probes made and the probes that failed
(any status but 200, or a charger not up). The goal: each reload ≤ 1.5 s, no failed probe.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from config_load import write_config  # bench/ is not a package: found through the path set just above
from harness import PROMETHEUS_HEADERS, ROOT, cpu_seconds, exporter_process, spawn

LIVE = 200


def config_text(path: Path, chargers: int, live: list[tuple[str, str]], generation: int) -> str:
    """bench/config_load.py's file with the first chargers made live and every label changed by ``generation``."""
    write_config(path, chargers)
    lines = path.read_text().splitlines()
    out = []
    index = -1
    for line in lines:
        new = line
        if line.startswith("  - name: "):
            index += 1
            if index < len(live):
                new = f"  - name: {live[index][0]}"
        elif line.startswith("    url: "):
            new = f"    url: {live[index][1]}" if index < len(live) else "    url: http://127.0.0.1:9/"
        elif line.startswith("      zone: "):
            new = f"{line}-g{generation}"
        out.append(new)
    return "\n".join(out) + "\n"


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    fleet, line = spawn("serve-fleet", str(LIVE), "0")
    try:
        live = [(str(name), str(url)) for name, url in json.loads(line)]
        path = workdir / "exporter.yml"
        # POST /-/reload needs the lifecycle API; started small, then the big file
        with exporter_process(live, workdir, ["--web.enable-lifecycle"], ROOT) as (proc, base):
            reloads: list[tuple[float, float]] = []
            probes = failed = 0
            stop = asyncio.Event()
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as client:

                async def scraper() -> None:
                    nonlocal probes, failed
                    semaphore = asyncio.Semaphore(20)

                    async def one(name: str) -> None:
                        nonlocal probes, failed
                        async with semaphore:
                            try:
                                async with client.get(
                                    f"{base}/probe", params={"target": name}, headers=PROMETHEUS_HEADERS
                                ) as response:
                                    text = await response.text()
                                    ok = response.status == 200 and "\npulsatrix_up{" in text
                                    ok = ok and text.split("\npulsatrix_up{", 1)[1].split("\n", 1)[0].endswith(" 1.0")
                            except (aiohttp.ClientError, TimeoutError):
                                ok = False
                            probes += 1
                            failed += not ok

                    while not stop.is_set():
                        await asyncio.gather(*(one(name) for name, _ in live))

                async def reload(generation: int) -> tuple[float, float]:
                    path.write_text(config_text(workdir / "gen.yml", args.chargers, live, generation))
                    cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
                    async with client.post(f"{base}/-/reload") as response:
                        body = await response.text()
                        assert response.status == 200, body
                    return time.perf_counter() - t0, cpu_seconds(proc.pid) - cpu0

                task = asyncio.create_task(scraper())
                await reload(0)  # from 200 chargers to all of them
                await asyncio.sleep(1)
                for generation in range(1, args.reloads + 1):
                    reloads.append(await reload(generation))
                    await asyncio.sleep(0.5)
                stop.set()
                await task
    finally:
        fleet.stop()
    walls = [w for w, _ in reloads]
    cpus = [c for _, c in reloads]
    return {
        "chargers": args.chargers,
        "reloads": len(reloads),
        "wall_s": [round(w, 3) for w in walls],
        "cpu_s": [round(c, 3) for c in cpus],
        "wall_median_s": statistics.median(walls),
        "cpu_median_s": statistics.median(cpus),
        "probes": probes,
        "failed": failed,
        "load": os.getloadavg()[0],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--chargers", type=int, default=10_000)
    parser.add_argument("--reloads", type=int, default=5)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="pulsatrix-reload-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    print(json.dumps({"load_before": load_before, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
