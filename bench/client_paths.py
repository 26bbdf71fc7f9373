"""What 4·N GETs cost a Python client, and why (issue 20): the client paths the exporter could take, side by side.

    .venv/bin/python bench/client_paths.py                  # N = 1,000 chargers, 6 rounds (~1 minute)
    .venv/bin/python bench/client_paths.py --chargers 200 --rounds 3

One fleet of N simulated chargers (bench/harness.py, 0 ms replies, a process of its own) and, in this process,
one variant after another, round by round: each fetches every charger's four endpoints once and decodes the JSON,
on connections kept alive from the warm-up round. Per variant: the median CPU (user + sys) and wall of a round.
The variants separate the costs that the exporter's profile mixes:

* ``aiohttp`` as the floor and the lean client of bench/fleet.py use it (default session), 4·N GETs at once and
  64 chargers at a time;
* ``fetch``: exporter/scrape/fetch.py's own session and request code (``make_session``, ``ChargerClient._get``: no
  cookie jar, the common headers on the session, URLs parsed once, a body of known length read at once), without
  the deadline scopes the poller puts around it;
* ``gc``: the collector as exporter/serve/app.py sets it once started (``gc.freeze()``, thresholds
  ``GC_THRESHOLDS``); without it the objects of 4,000 requests in flight are scanned again and again;
* ``raw``: a minimal HTTP/1.1 GET on an ``asyncio.Protocol`` (a request written as prepared bytes, a reply of
  known length), the least an asyncio client can do per GET: not a client the exporter could ship as it is (no
  chunked replies, TLS, redirects or error handling), but the bound a leaner client path could reach.

Writes ``client_paths.md`` and ``client_paths.json`` to ``--out`` (default bench/results/).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

import aiohttp
from yarl import URL

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # bench/ is not a package: found through the path above
    ENDPOINTS,
    ROOT,
    machine_info,
    spawn,
    write_results,
)

from exporter.config import ChargerConfig
from exporter.eventloop import choose
from exporter.scrape.fetch import ChargerClient, make_session
from exporter.serve.app import GC_THRESHOLDS

HEADERS: Final = {"Accept": "application/json", "User-Agent": "bench/1"}
DEFAULT_GC: Final = gc.get_threshold()


class RawGet(asyncio.Protocol):
    """One kept-alive connection, one GET at a time; the reply must carry a Content-Length."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio.Transport's kind

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = bytes(self.buffer[:end]).split(b"\r\n")
        length = next(int(v) for k, _, v in (h.partition(b":") for h in head[1:]) if k.lower() == b"content-length")
        if len(self.buffer) < end + 4 + length:
            return
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        waiter, self.waiter = self.waiter, None
        waiter.set_result((int(head[0].split(b" ", 2)[1]), body))

    async def get(self, request: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


@dataclass
class Variant:
    name: str
    what: str
    run: Callable[[], Awaitable[None]]
    tuned_gc: bool = False


async def variants(bases: Sequence[str]) -> tuple[list[Variant], Callable[[], Awaitable[None]]]:
    plain = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    # The exporter's own session and request code (exporter/scrape/fetch.py), as it polls: no deadline scopes around it.
    session = make_session(len(bases), None, keepalive_timeout=300.0, max_concurrency=None)
    clients = [ChargerClient(ChargerConfig(f"c{i}", base), session) for i, base in enumerate(bases)]
    texts = [[f"{base}/api/v1/{ep}" for ep in ENDPOINTS] for base in bases]
    urls = [[URL(text) for text in charger] for charger in texts]
    fetches = [[(client, ep) for ep in ENDPOINTS] for client in clients]

    async def get_plain(url: str) -> Any:
        async with plain.get(url) as response:
            return json.loads(await response.read())

    async def get_exporter(pair: tuple[ChargerClient, str]) -> Any:
        body = await pair[0]._get(pair[1])
        assert isinstance(body, bytes), body
        return json.loads(body)

    loop = asyncio.get_running_loop()
    raw: list[list[tuple[RawGet, bytes]]] = []
    for charger in urls:
        row = []
        for url in charger:
            _, protocol = await loop.create_connection(RawGet, url.host or "127.0.0.1", url.port or 80)
            request = f"GET {url.raw_path} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n"
            request += "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items()) + "\r\n"
            row.append((protocol, request.encode()))
        raw.append(row)

    async def get_raw(pair: tuple[RawGet, bytes]) -> Any:
        status, body = await pair[0].get(pair[1])
        assert status == 200
        return json.loads(body)

    def at_once(get: Callable[[Any], Awaitable[Any]], chargers: Sequence[Sequence[Any]]) -> Callable[[], Any]:
        async def one(charger: Sequence[Any]) -> None:
            await asyncio.gather(*(get(x) for x in charger))

        async def run() -> None:
            await asyncio.gather(*(one(c) for c in chargers))

        return run

    def bounded(get: Callable[[Any], Awaitable[Any]], chargers: Sequence[Sequence[Any]], m: int) -> Callable[[], Any]:
        async def run() -> None:
            semaphore = asyncio.Semaphore(m)

            async def one(charger: Sequence[Any]) -> None:
                async with semaphore:
                    await asyncio.gather(*(get(x) for x in charger))

            await asyncio.gather(*(one(c) for c in chargers))

        return run

    def lean(get: Callable[[Any], Awaitable[Any]], chargers: Sequence[Sequence[Any]]) -> Callable[[], Any]:
        async def run() -> None:
            pending = iter(chargers)

            async def worker() -> None:
                for charger in pending:
                    for x in charger:
                        await get(x)

            await asyncio.gather(*(worker() for _ in range(64)))

        return run

    found = [
        Variant("aiohttp-lean", "aiohttp defaults, 64 chargers at a time, a charger's GETs in sequence (the lean "
                "client)", lean(get_plain, texts)),
        Variant("aiohttp-floor", "aiohttp defaults, all 4·N GETs at once (the floor)", at_once(get_plain, texts)),
        Variant("aiohttp+gc", "aiohttp defaults, the collector as exporter/serve/app.py sets it, all at once",
                at_once(get_plain, texts), tuned_gc=True),
        Variant("fetch", "exporter/scrape/fetch.py's session and request (ChargerClient._get), all at once",
                at_once(get_exporter, fetches)),
        Variant("fetch+gc", "fetch.py, and the collector as exporter/serve/app.py sets it, all at once",
                at_once(get_exporter, fetches), tuned_gc=True),
        Variant("fetch+gc-256", "fetch.py + gc, 256 chargers at a time (max_concurrency: 256)",
                bounded(get_exporter, fetches, 256), tuned_gc=True),
        Variant("fetch+gc-lean", "fetch.py + gc, the lean client's shape", lean(get_exporter, fetches),
                tuned_gc=True),
        Variant("raw+gc", "a minimal HTTP/1.1 GET on asyncio.Protocol, gc as the exporter's, all at once",
                at_once(get_raw, raw), tuned_gc=True),
    ]  # fmt: skip

    async def close() -> None:
        await plain.close()
        await session.close()
        for row in raw:
            for protocol, _ in row:
                if protocol.transport is not None:
                    protocol.transport.close()

    return found, close


async def measure(bases: Sequence[str], rounds: int) -> dict[str, dict[str, float]]:
    found, close = await variants(bases)
    samples: dict[str, list[tuple[float, float]]] = {v.name: [] for v in found}
    try:
        for i in range(rounds + 1):  # the first round opens the connections: not counted
            for variant in found:
                gc.collect()
                if variant.tuned_gc:
                    gc.freeze()
                    gc.set_threshold(*GC_THRESHOLDS)
                cpu, wall = time.process_time(), time.perf_counter()
                await variant.run()
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                gc.set_threshold(*DEFAULT_GC)
                gc.unfreeze()
                if i:
                    samples[variant.name].append((cpu, wall))
    finally:
        await close()
    lean_cpu = statistics.median(c for c, _ in samples["aiohttp-lean"])
    return {
        v.name: {
            "what": v.what,  # type: ignore[dict-item]
            "cpu": statistics.median(c for c, _ in samples[v.name]),
            "wall": statistics.median(w for _, w in samples[v.name]),
            "cpu_per_get_us": statistics.median(c for c, _ in samples[v.name]) / (4 * len(bases)) * 1e6,
            "cpu_vs_lean": statistics.median(c for c, _ in samples[v.name]) / lean_cpu,
        }
        for v in found
    }


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    out = [
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, Linux {m['kernel']}; load average "
        f"{m['load_before']:.1f} before; {result.get('loop', 'asyncio')} event loop. N = {result['chargers']} chargers "
        "(4·N GETs per round, 0 ms replies), "
        f"medians of {result['rounds']} rounds, variants interleaved round by round (bench/client_paths.py).",
        "",
        "| variant | what | CPU per round | µs per GET | CPU ÷ lean | wall per round |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, row in result["variants"].items():
        out.append(
            f"| `{name}` | {row['what']} | {row['cpu'] * 1e3:.0f} ms | {row['cpu_per_get_us']:.0f} | "
            f"{row['cpu_vs_lean']:.2f} × | {row['wall'] * 1e3:.0f} ms |"
        )
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--chargers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="uvloop",
        help="the event loop (the exporter's default: uvloop where installed)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    loop = choose(args.loop)
    fleet, line = spawn("serve-fleet", str(args.chargers), "0")
    try:
        bases = [url for _, url in json.loads(line)]
        machine = machine_info()
        result = {"machine": machine, "chargers": args.chargers, "rounds": args.rounds, "loop": loop.name}
        with asyncio.Runner(loop_factory=loop.new_loop) as runner:
            result["variants"] = runner.run(measure(bases, args.rounds))
    finally:
        fleet.stop()
    write_results(args.out, "client_paths", result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
