"""The aiohttp application: routes, shared state and the per-scrape pipeline.

``/metrics`` and ``/probe`` read the chargers first (all concurrently, through :mod:`exporter.scrape.poll`, which
coalesces concurrent polls, serves readings younger than ``min_interval`` again and updates the long-lived health
state once per poll), then render a registry built for this one request. Nothing is fetched inside ``collect()``.
``SIGHUP`` and ``POST /-/reload`` re-read the config file (:mod:`exporter.serve.reload`).
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import logging
import signal
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractResolver
from prometheus_client import CollectorRegistry
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from exporter import __version__
from exporter.config import Config
from exporter.scrape.exposition import exposition, gzip_accepted
from exporter.scrape.families import Family, build_info_families, device_families, health_families, reading_age_families
from exporter.scrape.health import ExporterHealth
from exporter.scrape.poll import Fleet, Poller, Reading
from exporter.serve.landing import render_index
from exporter.serve.reload import Reloader

log = logging.getLogger("exporter.app")


@dataclass(slots=True)
class Runtime:
    """What exists only while the app runs: the threads that render expositions (its own pool: the default one is
    shared with whatever else uses it, and nothing must hold up a reply) and reloads in progress. The
    HTTP session and the chargers' pollers live in the :class:`Fleet` (``app[FLEET]``)."""

    render_pool: ThreadPoolExecutor | None = None
    ready: bool = False
    last_render: dict[str, float] = field(default_factory=dict)  # route path -> seconds its last render took
    reloads: set[asyncio.Task[tuple[bool, str]]] = field(default_factory=set)


# The running config is app[FLEET].config: a reload replaces it, so it is not kept under a key of its own.
FLEET = web.AppKey("fleet", Fleet)
HEALTH = web.AppKey("health", ExporterHealth)
RUNTIME = web.AppKey("runtime", Runtime)
RELOADER = web.AppKey("reloader", Reloader)
OWN_REGISTRY = web.AppKey("own_registry", CollectorRegistry)
LIFECYCLE = web.AppKey("lifecycle", bool)  # --web.enable-lifecycle: POST /-/reload allowed

# A young-generation collection every 10,000 allocations instead of 700: a scrape of 1,000 chargers keeps ~100,000
# objects alive at once (requests in flight, readings), which the default turns into thousands of collections.
GC_THRESHOLDS = (10_000, 20, 20)
INLINE_RENDER_SAMPLES = 1_000  # up to this many samples (one charger has about 70) are rendered on the event loop
SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
# A smaller header value is taken as this: anyone who reaches the port can send the header, and a value of 0.01 s
# would make every charger that takes 50 ms time out, counted against the charger. Prometheus' own default is 10 s.
MIN_SCRAPE_TIMEOUT = 1.0
SCRAPE_MARGIN = 0.5  # seconds kept free below Prometheus' scrape timeout for rendering and transfer ...
RENDER_SAFETY = 1.5  # ... or this many times the last render time, if that is longer ...
MAX_MARGIN_SHARE = 0.25  # ... but never more than this share of the scrape timeout


def scrape_budget(request: web.Request, last_render: float) -> float | None:
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
    timeout = max(timeout, MIN_SCRAPE_TIMEOUT)
    margin = min(max(SCRAPE_MARGIN, RENDER_SAFETY * last_render), timeout * MAX_MARGIN_SHARE)
    return max(timeout - margin, 0.05)


async def _runtime_ctx(app: web.Application) -> AsyncIterator[None]:
    runtime = app[RUNTIME]
    fleet = app[FLEET]
    fleet.start()
    runtime.render_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="render")
    hup = _install_sighup(app)
    runtime.ready = True
    log.info("polling %d charger(s) from %s", len(fleet.config.chargers), fleet.config.source)
    try:
        yield
    finally:
        runtime.ready = False
        if hup:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        for task in list(runtime.reloads):
            task.cancel()
        app[RELOADER].cancel()
        await fleet.close()
        runtime.render_pool.shutdown(wait=False, cancel_futures=True)


def _install_sighup(app: web.Application) -> bool:
    """SIGHUP reloads the config, as for Prometheus itself (without a handler it would end the process)."""

    def on_hup() -> None:
        log.info("SIGHUP: reloading the config")
        _start_reload(app)

    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_hup)
    except (NotImplementedError, RuntimeError, ValueError):  # no signals here (Windows, not the main thread)
        log.debug("cannot handle SIGHUP here; POST /-/reload still reloads the config")
        return False
    return True


def _start_reload(app: web.Application) -> asyncio.Task[tuple[bool, str]]:
    runtime = app[RUNTIME]
    task = asyncio.create_task(app[RELOADER].reload(runtime.render_pool), name="config reload")
    runtime.reloads.add(task)
    task.add_done_callback(runtime.reloads.discard)
    return task


async def _tune_gc(_: web.Application) -> None:
    """Once started: what exists now (modules, config, one client per charger) lives as long as the process, so
    the garbage collector need never look at it again (gc.freeze); and it runs less often. At N = 1,000 this
    takes about a third off the exporter's CPU per scrape (bench/fleet.py)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def _not_ready(app: web.Application) -> None:
    app[RUNTIME].ready = False  # shutting down: say so on /-/ready while in-flight requests finish


async def _scrape(request: web.Request, pollers: Sequence[Poller]) -> list[Reading]:
    app = request.app
    last_render = app[RUNTIME].last_render.get(request.path, 0.0)  # /metrics renders far more than /probe
    return await app[FLEET].read(pollers, scrape_budget(request, last_render))


def _device_families(app: web.Application, readings: Sequence[Reading]) -> list[Family]:
    """This scrape's families, built on the event loop, so that the render thread only reads them."""
    health = app[HEALTH]
    results = [r.result for r in readings]
    # A charger removed by a reload during this scrape has no counters any more: it is not exported again.
    chargers = [r.charger for r in results if r.charger.name in health.counters]
    return [
        *device_families(results, on_error=health.exporter_error),
        *reading_age_families((r.result.charger, r.age) for r in readings),
        *health_families(health, chargers),
    ]


async def _render(
    request: web.Request, families: Sequence[Family], started: float, extra: CollectorRegistry | None = None
) -> web.StreamResponse:
    """Render in the render threads: for thousands of chargers it takes long enough to stall other requests. A
    small exposition (a probe: one charger) is rendered right here, where it costs less than the thread hop."""
    runtime = request.app[RUNTIME]
    accept = ",".join(request.headers.getall("Accept", []))
    headers: dict[str, str] = {}
    # gzip here too (Prometheus asks for it): aiohttp would compress in the default thread pool.
    gzipped = gzip_accepted(",".join(request.headers.getall("Accept-Encoding", [])))
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
    readings = await _scrape(request, list(app[FLEET].pollers.values()))
    started = time.perf_counter()
    families = [*_device_families(app, readings), *own_families(app[RELOADER])]
    return await _render(request, families, started, extra=app[OWN_REGISTRY])


async def handle_probe(request: web.Request) -> web.StreamResponse:
    app = request.app
    target = request.query.get("target", "")
    if not target:
        raise web.HTTPBadRequest(text="missing 'target' parameter: the name of a configured charger\n")
    poller = app[FLEET].pollers.get(target)
    if poller is None:
        # Never an open proxy: only configured charger *names* are accepted, and nothing is fetched otherwise.
        raise web.HTTPNotFound(text=f"unknown target {target[:64]!r}: not a configured charger name\n")
    readings = await _scrape(request, [poller])
    started = time.perf_counter()
    return await _render(request, _device_families(app, readings), started)


LIFECYCLE_DISABLED = (
    "Lifecycle API is not enabled: start the exporter with --web.enable-lifecycle to reload over HTTP, or send it "
    "SIGHUP\n"
)


async def handle_reload(request: web.Request) -> web.Response:
    """Re-read the config file: 200 with a summary, or 500 with every problem (the running config stays). Refused
    with 403 unless ``--web.enable-lifecycle`` (as Prometheus does): anyone who reaches the port could otherwise
    make the exporter re-read its files and secrets at will."""
    if not request.app[LIFECYCLE]:
        raise web.HTTPForbidden(text=LIFECYCLE_DISABLED)
    ok, message = await asyncio.shield(_start_reload(request.app))
    if not ok:
        raise web.HTTPInternalServerError(text=message + "\n")
    return web.Response(text=f"config reloaded: {message}\n")


async def handle_own_metrics(request: web.Request) -> web.StreamResponse:
    """The exporter's own metrics only (build info, process): contacts no charger, so it is cheap to scrape as
    the exporter's liveness target next to a /probe job."""
    app = request.app
    return await _render(request, own_families(app[RELOADER]), time.perf_counter(), extra=app[OWN_REGISTRY])


async def handle_sd(request: web.Request) -> web.Response:
    """Prometheus HTTP service discovery: one target group per charger, for the /probe pattern."""
    groups = []
    for charger in request.app[FLEET].config.chargers:
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


async def handle_index(request: web.Request) -> web.Response:
    """The status page (:mod:`exporter.serve.landing`): each charger Up / Partial / Down / Unmonitored, with its
    errors."""
    app = request.app
    config = app[FLEET].config
    page = render_index(config.chargers, app[HEALTH].status, version=__version__, source=config.source, now=time.time())
    return web.Response(text=page, content_type="text/html")


def own_families(reloader: Reloader) -> list[Family]:
    """The exporter's own metrics that it builds itself: build info and the reload status (read now)."""
    return [*build_info_families(), *reloader.families()]


def own_registry() -> CollectorRegistry:
    """The exporter's own metrics that prometheus_client collects: process and platform, written after
    :func:`own_families` (build info, reload status, then these: the order the exposition has always had)."""
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


def create_app(
    config: Config,
    *,
    config_path: str | Path | None = None,
    resolver: AbstractResolver | None = None,
    tune_gc: bool = False,
    enable_lifecycle: bool = False,
) -> web.Application:
    """Wire routes and state.

    ``config_path`` is the file that SIGHUP and ``POST /-/reload`` re-read; by default the file ``config`` was
    loaded from (its ``source``), none for an in-memory config such as the demo's (a reload then says so).
    ``resolver`` replaces aiohttp's host-name resolver (tests use it). ``tune_gc`` tunes the process's garbage
    collector once started (the command line sets it: it owns the process). ``enable_lifecycle``
    (``--web.enable-lifecycle``) allows ``POST /-/reload``; without it the endpoint answers 403 (SIGHUP always
    reloads).
    """
    if config_path is None and not config.source.startswith("<"):
        config_path = config.source
    app = web.Application()
    health = ExporterHealth(config.chargers)
    fleet = Fleet(config, health, resolver)
    reloader = Reloader(Path(config_path) if config_path is not None else None, fleet)
    app[HEALTH] = health
    app[FLEET] = fleet
    app[RELOADER] = reloader
    app[OWN_REGISTRY] = own_registry()
    app[LIFECYCLE] = enable_lifecycle
    app[RUNTIME] = Runtime()
    app.cleanup_ctx.append(_runtime_ctx)
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
    app.router.add_post("/-/reload", handle_reload)
    return app
