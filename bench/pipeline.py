"""The exporter's own work per charger, without a network: parse the four replies, record the poll in the health
state, build the families, write the exposition (OpenMetrics, as Prometheus asks) and gzip it, as one ``/metrics``
scrape of N chargers does after its GETs. CPU seconds per charger (``time.process_time``), median of rounds (total:
of every stage's sum); ``--profile FILE`` writes a cProfile of the rounds.

    python bench/pipeline.py --chargers 1000 --rounds 20
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exporter.config import demo_config  # noqa: E402 - after the path set-up, so it runs from a checkout
from exporter.scrape.exposition import exposition  # noqa: E402
from exporter.scrape.families import device_families  # noqa: E402
from exporter.scrape.health import ExporterHealth  # noqa: E402
from exporter.scrape.parse import parse_charger  # noqa: E402
from exporter.scrape.results import ENDPOINTS, ChargerFetch, EndpointFetch  # noqa: E402
from exporter.simulator import make_chargers  # noqa: E402

ACCEPT = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"  # noqa: E501 - Prometheus' own header
T0 = 1_800_000_000.0


def fetched(n: int) -> list[ChargerFetch]:
    """N chargers' four replies as the fetch step hands them on (bodies as the simulator sends them)."""
    sims = make_chargers(n, now=T0)
    config = demo_config("http://127.0.0.1:1", [s.name for s in sims], {s.name: {"site": s.site} for s in sims})
    out = []
    for sim, charger in zip(sims, config.chargers, strict=True):
        bodies = {
            "configuration": json.dumps(sim.configuration()).encode(),
            "transaction": json.dumps(sim.transaction()).encode(),
            "charging": json.dumps(sim.charging()).encode(),
            "limits": sim.limits_body(),
        }
        out.append(ChargerFetch(charger, {ep: EndpointFetch(ep, body=bodies[ep]) for ep in ENDPOINTS}, 0.01, T0))
    return out


def one_scrape(fetches: Sequence[ChargerFetch]) -> int:
    results = [parse_charger(f) for f in fetches]
    body, _ = exposition(device_families(results), ACCEPT)
    return len(gzip.compress(body, compresslevel=1))


def measure(n: int, rounds: int, profile: str | None) -> dict[str, float]:
    fetches = fetched(n)
    one_scrape(fetches)  # warm the label caches, as every scrape after the first finds them
    health = ExporterHealth([f.charger for f in fetches])
    stages: dict[str, list[float]] = {
        "parse": [],
        "record": [],
        "families": [],
        "exposition": [],
        "gzip": [],
        "total": [],
    }
    profiler = cProfile.Profile() if profile else None
    for _ in range(rounds):
        if profiler:
            profiler.enable()
        t0 = time.process_time()
        results = [parse_charger(f) for f in fetches]
        t1 = time.process_time()
        for result in results:
            health.record([result], now=T0)  # as each poll records itself when it completes
        t2 = time.process_time()
        families = device_families(results)
        t3 = time.process_time()
        body, _ = exposition(families, ACCEPT)
        t4 = time.process_time()
        gzip.compress(body, compresslevel=1)
        t5 = time.process_time()
        if profiler:
            profiler.disable()
        for name, seconds in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0), strict=True):
            stages[name].append(seconds)
    if profiler and profile:
        profiler.dump_stats(profile)
    return {name: statistics.median(values) / n * 1e6 for name, values in stages.items()}  # µs per charger


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--chargers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the rounds here")
    args = parser.parse_args(argv)
    per_charger = measure(args.chargers, args.rounds, args.profile)
    print(
        f"N = {args.chargers}, {args.rounds} rounds, CPU µs per charger (median): "
        + ", ".join(f"{name} {value:.1f}" for name, value in per_charger.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
