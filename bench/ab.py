"""Before and after: two checkouts of the exporter scraped side by side against one fleet, round by round.

    git worktree add --detach ../before <commit>
    .venv/bin/python bench/ab.py --before ../before                    # N = 1,000, 15 rounds, both loops
    .venv/bin/python bench/ab.py --before ../before --loops uvloop --no-probe --profile /tmp/ab   # and where it goes

A change that saves a few percent of the CPU a scrape costs is smaller than the spread between two runs of
bench/fleet.py on a shared machine; taken in one run, with the two exporters' rounds interleaved against the same
simulated chargers, the difference is measured within the run, as the fleet benchmark takes its ratios. Per loop
and exporter: the median CPU (user + sys, all threads) and wall of a ``/metrics`` scrape with Prometheus' headers,
and of ``/probe`` of every charger (50 at a time), and the exporter's RSS after the rounds; and the same GETs through
each checkout's own client code alone (``ChargerClient._get``, its collector settings, all at once: bench/harness.py's
``client`` baseline), so that the exporter's *own* CPU per charger, the scrape's minus its GETs', is measured in the
same run. ``--profile PREFIX`` samples both exporters with py-spy (``pip install py-spy``) during the counted rounds
and adds where their CPU goes, part by part (with ``--no-probe`` the shares are of ``/metrics`` alone).

Writes ``ab.md`` and ``ab.json`` to ``--out`` (default bench/results/).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # bench/ is not a package: found through the path set just above
    PROMETHEUS_HEADERS,
    ROOT,
    Proc,
    exporter_process,
    machine_info,
    raise_fd_limit,
    rss_bytes,
    spawn,
    timed,
    write_results,
)

PROBE_CONCURRENCY: Final = 50


class Target:
    """The process of the exporter's client code alone (bench/harness.py's ``client`` baseline)."""

    def __init__(self, proc: Proc, base: str) -> None:
        self.proc, self.base = proc, base

    def close(self) -> None:
        self.proc.stop()


def commit_of(src: Path) -> str:
    git = ["git", "-C", str(src)]
    done = subprocess.run([*git, "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "exporter"], check=False, capture_output=True, text=True)
    return (done.stdout.strip() or "?") + (" + changes" if dirty.stdout.strip() else "")


async def rounds(
    bases: dict[str, str], pids: dict[str, int], names: list[str], args: argparse.Namespace, clients: dict[str, Target]
) -> dict[str, dict[str, list[float]]]:
    """``/metrics`` and ``/probe`` of each exporter in turn, each followed by a round of its own client code alone
    (``clients``); warm-up rounds first, then the counted ones."""
    timeout = aiohttp.ClientTimeout(total=300)
    samples: dict[str, dict[str, list[float]]] = {
        k: {"metrics_cpu": [], "metrics_wall": [], "probe_cpu": [], "probe_wall": [], "client_cpu": []} for k in bases
    }
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as http:

        async def client_round(client: Target) -> dict[str, int]:
            async with http.get(f"{client.base}/run") as reply:
                await reply.read()
                assert reply.status == 200, reply.status
            return {}

        async def scrape(base: str) -> dict[str, int]:
            async with http.get(f"{base}/metrics", headers=PROMETHEUS_HEADERS, auto_decompress=False) as reply:
                await reply.read()
                assert reply.status == 200, reply.status
            return {}

        async def probe_all(base: str) -> dict[str, int]:
            semaphore = asyncio.Semaphore(PROBE_CONCURRENCY)

            async def one(name: str) -> None:
                async with (
                    semaphore,
                    http.get(
                        f"{base}/probe", params={"target": name}, headers=PROMETHEUS_HEADERS, auto_decompress=False
                    ) as reply,
                ):
                    await reply.read()
                    assert reply.status == 200, reply.status

            await asyncio.gather(*(one(name) for name in names))
            return {}

        spies: list[subprocess.Popen[bytes]] = []
        for i in range(args.warmup + args.rounds):
            if i == args.warmup and args.profile:
                spies = [
                    subprocess.Popen(  # noqa: ASYNC220 - once, between rounds
                        ["py-spy", "record", "-p", str(pid), "-o", f"{args.profile}.{kind}.txt", "-f", "raw",
                         "-r", "250", "--nonblocking"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    )
                    for kind, pid in pids.items()
                ]  # fmt: skip
                await asyncio.sleep(1.5)
            order = list(bases) if i % 2 == 0 else list(reversed(bases))  # neither always goes first
            for kind in order:
                metrics = await timed(pids[kind], scrape(bases[kind]))
                probes = await timed(pids[kind], probe_all(bases[kind])) if args.probe else None
                alone = await timed(clients[kind].proc.pid, client_round(clients[kind]))
                if i >= args.warmup:
                    samples[kind]["client_cpu"].append(alone.cpu)
                    samples[kind]["metrics_cpu"].append(metrics.cpu)
                    samples[kind]["metrics_wall"].append(metrics.wall)
                    if probes is not None:
                        samples[kind]["probe_cpu"].append(probes.cpu / len(names))
                        samples[kind]["probe_wall"].append(probes.wall)
        for spy in spies:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            spy.wait(60)
    return samples


def client_code(src: Path) -> list[str]:
    """The source of what the ``client`` baseline runs of a checkout: its request code, its session and its
    collector settings."""
    import ast

    found = []
    for file, names in (
        ("exporter/scrape/fetch.py", {"_get", "make_session", "connection_limit"}),
        ("exporter/serve/app.py", {"GC_THRESHOLDS"}),
    ):
        text = (src / file).read_text()
        for node in ast.walk(ast.parse(text)):
            named = getattr(node, "name", None) or next(
                (t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)), None
            )
            if named in names:
                found.append(ast.get_source_segment(text, node) or "")
    return sorted(found)


def same_client_code(before: Path, after: Path) -> bool:
    return client_code(before) == client_code(after)


# Where a sample's innermost frame is, by file: what each part of the exporter and its libraries costs.
PROFILE_PARTS: Final = (
    ("parse the replies", ("scrape/parse.py", "scrape/devicetext.py", "json/")),
    ("build the metric families", ("scrape/families.py", "scrape/labels.py")),
    ("write the exposition", ("scrape/exposition.py", "prometheus_client/")),
    ("gzip", ("gzip.py", "serve/replies.py")),
    ("record the poll (health)", ("scrape/health.py",)),
    ("poll: coalescing, deadlines, waits", ("scrape/poll.py", "scrape/deadline.py", "asyncio/timeouts.py")),
    ("fetch: the exporter's request code", ("scrape/fetch.py",)),
    ("asyncio tasks and futures", ("asyncio/tasks.py", "asyncio/futures.py", "asyncio/events.py", "asyncio/base_")),
    ("aiohttp client (requests, connections, replies)", ("aiohttp/client", "aiohttp/connector.py", "aiohttp/streams.py",
                                                          "aiohttp/http_writer.py", "aiohttp/helpers.py", "yarl/",
                                                          "multidict/", "aiohttp/tracing.py", "aiohttp/cookiejar.py")),
    ("aiohttp server (the scrape's request)", ("aiohttp/web", "serve/")),
)  # fmt: skip


def profile_parts(raw: Path) -> dict[str, float]:
    """Share of py-spy's samples (raw format: ``frame;frame;... count``) per part of :data:`PROFILE_PARTS`, by the
    innermost frame's file; the event loop's own C code (uvloop) shows as its ``run`` frame."""
    counts: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        leaf = stack.rsplit(";", 1)[-1]
        if leaf.startswith("run (") and "serve/server.py" in leaf:  # inside loop.run_forever: uvloop's own C code
            part = "the event loop itself (C)"
        else:
            part = next((name for name, files in PROFILE_PARTS if any(f in leaf for f in files)), "other")
        counts[part] = counts.get(part, 0) + int(count)
        total += int(count)
    return {part: n / total for part, n in sorted(counts.items(), key=lambda kv: -kv[1])} if total else {}


async def one_loop(loop: str, urls: list[tuple[str, str]], args: argparse.Namespace, work: Path) -> dict[str, Any]:
    os.environ["PULSATRIX_EVENT_LOOP"] = loop  # the exporters' loop
    sources = {"before": args.before.resolve(), "after": args.after.resolve()}
    settings = args.setting or []
    urls_file = work / "urls.json"
    urls_file.write_text(json.dumps(urls))
    clients = {}
    for kind, src in sources.items():
        client_proc, port_line = spawn("serve-baselines", str(urls_file), "client", str(src))
        clients[kind] = Target(client_proc, f"http://127.0.0.1:{int(port_line)}")
    with (
        contextlib.closing(clients["before"]),
        contextlib.closing(clients["after"]),
        exporter_process(urls, work, [], sources["before"], name="before", settings=settings) as (before, b_base),
        exporter_process(urls, work, [], sources["after"], name="after", settings=settings) as (after, a_base),
    ):
        pids = {"before": before.pid, "after": after.pid}
        samples = await rounds({"before": b_base, "after": a_base}, pids, [u[0] for u in urls], args, clients)
        rss = {kind: rss_bytes(pid) / 2**20 for kind, pid in pids.items()}
    out: dict[str, Any] = {"loop": loop, "same_client_code": same_client_code(sources["before"], sources["after"])}
    if out["same_client_code"]:  # the same code measured twice: one figure from both processes' rounds, less noise
        pooled = statistics.median([*samples["before"]["client_cpu"], *samples["after"]["client_cpu"]])
        samples["before"]["client_cpu"] = samples["after"]["client_cpu"] = [pooled]
    if args.profile:
        out["profile"] = {kind: profile_parts(Path(f"{args.profile}.{kind}.txt")) for kind in pids}
    for kind in ("before", "after"):
        row: dict[str, Any] = {key: statistics.median(values) for key, values in samples[kind].items() if values}
        row["rss_mib"] = rss[kind]
        row["own_cpu"] = row["metrics_cpu"] - row["client_cpu"]
        row["commit"] = commit_of(sources[kind])
        row["rounds"] = len(samples[kind]["metrics_cpu"])
        out[kind] = row
    return out


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    n = result["chargers"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, Linux {m['kernel']}; load average "
        f"{m['load_before']:.1f} before. N = {n} chargers (0 ms replies), settings {result['settings'] or 'default'}; "
        f"medians of {result['rounds']} rounds after {result['warmup']} warm-up, before and after interleaved "
        "(bench/ab.py). *Its GETs alone*: the same GETs through the checkout's own client code and collector "
        "settings, all at once (where both checkouts' are the same code, one median of both processes' rounds); "
        "*own*: the scrape's CPU less that, per charger.",
        "",
        "| loop | exporter | commit | /metrics CPU | per charger | its GETs alone | own per charger | /metrics wall | "
        "/probe CPU per charger | RSS |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in result["runs"]:
        for kind in ("before", "after"):
            row = run[kind]
            probe = f"{row['probe_cpu'] * 1e6:.0f} µs" if "probe_cpu" in row else "—"
            lines.append(
                f"| {run['loop']} | {kind} | `{row['commit']}` | {row['metrics_cpu'] * 1e3:.1f} ms | "
                f"{row['metrics_cpu'] / n * 1e6:.0f} µs | {row['client_cpu'] * 1e3:.1f} ms | "
                f"{row['own_cpu'] / n * 1e6:.0f} µs | {row['metrics_wall'] * 1e3:.1f} ms | {probe} | "
                f"{row['rss_mib']:.0f} MiB |"
            )
        ratio = run["after"]["metrics_cpu"] / run["before"]["metrics_cpu"]
        own = run["after"]["own_cpu"] / run["before"]["own_cpu"]
        lines.append(f"| {run['loop']} | after ÷ before | | {ratio:.2f} × | | | {own:.2f} × | | | |")
    for run in result["runs"]:
        if "profile" in run:
            lines += ["", *profile_table(run, n)]
    return "\n".join(lines) + "\n"


def profile_table(run: dict[str, Any], n: int) -> list[str]:
    """The profile's parts as CPU per charger of a scrape: each part's share of the samples × the CPU the rounds
    took (both routes when ``/probe`` was measured too: then read the shares, not the µs)."""
    per = {kind: run[kind]["metrics_cpu"] / n * 1e6 for kind in ("before", "after")}
    parts = list(dict.fromkeys([*run["profile"]["before"], *run["profile"]["after"]]))
    lines = [
        f"py-spy, {run['loop']}: where the CPU of a charger's `/metrics` scrape goes (share of the samples × the "
        "scrape's CPU per charger)",
        "",
        "| part | before | after |",
        "|---|---:|---:|",
    ]
    for part in parts:
        cells = [
            f"{run['profile'][kind].get(part, 0.0) * per[kind]:.0f} µs ({run['profile'][kind].get(part, 0.0):.0%})"
            for kind in ("before", "after")
        ]
        lines.append(f"| {part} | {cells[0]} | {cells[1]} |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the exporter to compare against")
    parser.add_argument("--after", type=Path, default=ROOT, help="default: this checkout")
    parser.add_argument("--chargers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--loops", default="asyncio,uvloop")
    parser.add_argument("--no-probe", dest="probe", action="store_false", help="/metrics only")
    parser.add_argument("--setting", action="append", help="a top-level config line (default: none)")
    parser.add_argument(
        "--profile", help="sample both exporters with py-spy into PROFILE.before.txt and PROFILE.after.txt (raw stacks)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    raise_fd_limit(16 * args.chargers + 1024)
    fleet, line = spawn("serve-fleet", str(args.chargers), "0")
    try:
        urls = [(str(u[0]), str(u[1])) for u in json.loads(line)]
        result: dict[str, Any] = {
            "machine": machine_info(),
            "chargers": args.chargers,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "settings": args.setting or [],
            "runs": [],
        }
        with tempfile.TemporaryDirectory() as work:
            for loop in args.loops.split(","):
                result["runs"].append(asyncio.run(one_loop(loop, urls, args, Path(work))))
    finally:
        fleet.stop()
    write_results(args.out, "ab", result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
