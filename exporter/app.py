"""The aiohttp application: routes, shared state and the per-scrape pipeline.

``/metrics`` and ``/probe`` fetch first (all chargers concurrently), update the long-lived health state, then
render a registry built for this one request. Nothing is fetched inside ``collect()``.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import html
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver
from prometheus_client import CollectorRegistry
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from exporter import __version__
from exporter.config import Config
from exporter.fetch import ChargerClient, fetch_all, make_session
from exporter.health import ExporterHealth
from exporter.metrics import Family, StaticCollector, build_info_families, device_families, health_families
from exporter.model import ChargerResult
from exporter.parse import parse_charger
from exporter.render import exposition

log = logging.getLogger("exporter.app")


@dataclass(slots=True)
class Runtime:
    """What exists only while the app runs: the one shared HTTP session, a prepared client per charger and the
    threads that render expositions (its own pool: the default one also resolves host names, and a hanging DNS
    lookup must never hold up a reply)."""

    session: aiohttp.ClientSession | None = None
    clients: dict[str, ChargerClient] = field(default_factory=dict)
    render_pool: ThreadPoolExecutor | None = None
    ready: bool = False
    last_render: dict[str, float] = field(default_factory=dict)  # route path -> seconds its last render took


CONFIG = web.AppKey("config", Config)
HEALTH = web.AppKey("health", ExporterHealth)
RUNTIME = web.AppKey("runtime", Runtime)
OWN_REGISTRY = web.AppKey("own_registry", CollectorRegistry)

# A young-generation collection every 10,000 allocations instead of 700: a scrape of 1,000 chargers keeps ~100,000
# objects alive at once (requests in flight, readings), which the default turns into thousands of collections.
GC_THRESHOLDS = (10_000, 20, 20)
INLINE_RENDER_SAMPLES = 1_000  # up to this many samples (one charger has about 70) are rendered on the event loop
SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
SCRAPE_MARGIN = 0.5  # seconds kept free below Prometheus' scrape timeout for rendering and transfer ...
RENDER_SAFETY = 1.5  # ... or this many times the last render time, if that is longer ...
MAX_MARGIN_SHARE = 0.25  # ... but never more than this share of the scrape timeout


def scrape_budget(request: web.Request, last_render: float = 0.0) -> float | None:
    """Seconds the chargers may take, from Prometheus' scrape-timeout header (None when it is absent)."""
    raw = request.headers.get(SCRAPE_TIMEOUT_HEADER)
    if raw is None:
        return None
    try:
        timeout = float(raw)
    except ValueError:
        return None
    if not timeout > 0:
        return None
    margin = min(max(SCRAPE_MARGIN, RENDER_SAFETY * last_render), timeout * MAX_MARGIN_SHARE)
    return max(timeout - margin, 0.05)


def _runtime_ctx(resolver: AbstractResolver | None) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        runtime = app[RUNTIME]
        chargers = app[CONFIG].chargers
        session = make_session(len(chargers), resolver)
        runtime.session = session
        runtime.clients = {c.name: ChargerClient(c, session) for c in chargers}
        runtime.render_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="render")
        runtime.ready = True
        log.info("polling %d charger(s) from %s", len(chargers), app[CONFIG].source)
        try:
            yield
        finally:
            runtime.ready = False
            runtime.clients = {}
            runtime.session = None
            await session.close()
            runtime.render_pool.shutdown(wait=False, cancel_futures=True)

    return ctx


async def _tune_gc(_: web.Application) -> None:
    """Once started: what exists now (modules, config, one client per charger) lives as long as the process, so
    the garbage collector need never look at it again (gc.freeze); and it runs less often. At N = 1,000 this
    takes about a third off the exporter's CPU per scrape (bench/fleet.py)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def _not_ready(app: web.Application) -> None:
    app[RUNTIME].ready = False  # shutting down: say so on /-/ready while in-flight requests finish


async def _scrape(request: web.Request, clients: Sequence[ChargerClient]) -> list[ChargerResult]:
    app = request.app
    last_render = app[RUNTIME].last_render.get(request.path, 0.0)  # /metrics renders far more than /probe
    fetched = await fetch_all(clients, scrape_budget(request, last_render))
    results = [parse_charger(f) for f in fetched]
    app[HEALTH].record(results)
    return results


async def _render(
    request: web.Request, families: Sequence[Family], started: float, extra: CollectorRegistry | None = None
) -> web.StreamResponse:
    """Render in the render threads: for thousands of chargers it takes long enough to stall other requests. A
    small exposition (a probe: one charger) is rendered right here, where it costs less than the thread hop."""
    runtime = request.app[RUNTIME]
    accept = ",".join(request.headers.getall("Accept", []))
    headers: dict[str, str] = {}
    # gzip here too (Prometheus asks for it): aiohttp would compress in the default thread pool.
    gzipped = "gzip" in request.headers.get("Accept-Encoding", "")
    if gzipped:
        headers["Content-Encoding"] = "gzip"

    def render() -> tuple[bytes, str]:
        body, content_type = exposition(families, accept, extra)
        # Level 1: a third of level 6's CPU for 1,000 chargers (25 vs 75 ms), 13 % more bytes (256 vs 227 KiB).
        return (gzip.compress(body, compresslevel=1) if gzipped else body), content_type

    if extra is None and sum(len(family) for family in families) <= INLINE_RENDER_SAMPLES:
        body, headers["Content-Type"] = render()
    else:
        body, headers["Content-Type"] = await asyncio.get_running_loop().run_in_executor(runtime.render_pool, render)
    runtime.last_render[request.path] = time.perf_counter() - started
    return web.Response(body=body, headers=headers)


async def handle_metrics(request: web.Request) -> web.StreamResponse:
    app = request.app
    config = app[CONFIG]
    results = await _scrape(request, list(app[RUNTIME].clients.values()))
    started = time.perf_counter()
    # Families are built on the event loop, so the render thread only reads them.
    families = device_families(results) + health_families(app[HEALTH], config.chargers)
    return await _render(request, families, started, extra=app[OWN_REGISTRY])


async def handle_probe(request: web.Request) -> web.StreamResponse:
    app = request.app
    target = request.query.get("target", "")
    if not target:
        raise web.HTTPBadRequest(text="missing 'target' parameter: the name of a configured charger\n")
    client = app[RUNTIME].clients.get(target)
    if client is None:
        # Never an open proxy: only configured charger *names* are accepted, and nothing is fetched otherwise.
        raise web.HTTPNotFound(text=f"unknown target {target[:64]!r}: not a configured charger name\n")
    results = await _scrape(request, [client])
    started = time.perf_counter()
    families = device_families(results) + health_families(app[HEALTH], [client.charger])
    return await _render(request, families, started)


async def handle_own_metrics(request: web.Request) -> web.StreamResponse:
    """The exporter's own metrics only (build info, process): contacts no charger, so it is cheap to scrape as
    the exporter's liveness target next to a /probe job."""
    return await _render(request, [], time.perf_counter(), extra=request.app[OWN_REGISTRY])


async def handle_sd(request: web.Request) -> web.Response:
    """Prometheus HTTP service discovery: one target group per charger, for the /probe pattern."""
    groups = []
    for charger in request.app[CONFIG].chargers:
        labels = {"__meta_pulsatrix_charger": charger.name}
        labels.update({f"__meta_pulsatrix_label_{k}": v for k, v in charger.labels})
        groups.append({"targets": [charger.name], "labels": labels})
    return web.json_response(groups)


async def handle_healthy(_: web.Request) -> web.Response:
    return web.Response(text="Healthy.\n")


async def handle_ready(request: web.Request) -> web.Response:
    if not request.app[RUNTIME].ready:
        raise web.HTTPServiceUnavailable(text="Not ready.\n")
    return web.Response(text="Ready.\n")


def _ago(ts: float | None, now: float) -> str:
    if ts is None:
        return ""
    seconds = max(0, int(now - ts))
    when = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{when} ({seconds}s ago)"


async def handle_index(request: web.Request) -> web.Response:
    app = request.app
    health = app[HEALTH]
    now = time.time()
    rows = []
    for charger in app[CONFIG].chargers:
        status = health.status[charger.name]
        if status.up is None:
            state, css = "not scraped yet", "unknown"
        elif status.up:
            state, css = "up", "up"
        else:
            state, css = "down", "down"
        extra = ", ".join(f"{k}={v}" for k, v in charger.labels)
        error = f"{status.last_error} — {_ago(status.last_error_time, now)}" if status.last_error else ""
        name = html.escape(charger.name)
        rows.append(
            f"<tr><td><a href='probe?target={name}'>{name}</a></td><td>{html.escape(extra)}</td>"
            f"<td class='{css}'>{state}</td><td>{html.escape(_ago(status.last_scrape, now))}</td>"
            f"<td>{html.escape(error)}</td></tr>"
        )
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pulsatrix exporter</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}.up{{color:#080}}.down{{color:#b00}}
.unknown{{color:#888}}</style></head>
<body><h1>pulsatrix exporter</h1>
<p>Version {html.escape(__version__)} · {len(app[CONFIG].chargers)} charger(s) from
{html.escape(app[CONFIG].source)}</p>
<p><a href="metrics">/metrics</a> · <a href="-/metrics">/-/metrics</a> · <a href="sd">/sd</a> ·
<a href="-/healthy">/-/healthy</a> ·
<a href="-/ready">/-/ready</a></p>
<table><tr><th>charger (probe)</th><th>labels</th><th>status</th><th>last scrape</th><th>last error</th></tr>
{"".join(rows)}
</table></body></html>
"""
    return web.Response(text=body, content_type="text/html")


def own_registry() -> CollectorRegistry:
    """The exporter's long-lived metrics besides the error counters: build info, process and platform."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StaticCollector(build_info_families()))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


def create_app(config: Config, *, resolver: AbstractResolver | None = None, tune_gc: bool = False) -> web.Application:
    """Wire routes and state. ``resolver`` replaces aiohttp's host-name resolver (tests use it); ``tune_gc`` tunes
    the process's garbage collector once started (the command line sets it: it is the process's owner)."""
    app = web.Application()
    app[CONFIG] = config
    app[HEALTH] = ExporterHealth(config.chargers)
    app[OWN_REGISTRY] = own_registry()
    app[RUNTIME] = Runtime()
    app.cleanup_ctx.append(_runtime_ctx(resolver))
    if tune_gc:
        app.on_startup.append(_tune_gc)  # after cleanup_ctx's start-up: the clients exist by then
    app.on_shutdown.append(_not_ready)
    app.router.add_get("/", handle_index)
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/probe", handle_probe)
    app.router.add_get("/sd", handle_sd)
    app.router.add_get("/-/metrics", handle_own_metrics)
    app.router.add_get("/-/healthy", handle_healthy)
    app.router.add_get("/-/ready", handle_ready)
    return app
