"""The running exporter: :class:`Exporter` owns the aiohttp application, its state and its handlers.

``/metrics`` and ``/probe`` poll the chargers first (all concurrently, through :mod:`exporter.scrape.poll`, which
coalesces concurrent polls, serves readings younger than ``min_interval`` again and updates the long-lived health
state once per poll), then render a registry built for this one scrape. Nothing is fetched inside ``collect()``.
``SIGHUP`` and ``POST /-/reload`` re-read the config file (:mod:`exporter.serve.reload`) and the web config
(:mod:`exporter.serve.webconfig`).
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractResolver
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from exporter import __version__
from exporter.config import Config
from exporter.scrape.exposition import exposition, gzip_accepted
from exporter.scrape.families import Family, build_info_families, device_families, health_families, reading_age_families
from exporter.scrape.health import ExporterHealth
from exporter.scrape.poll import Fleet, Poller, Reading
from exporter.serve.auth import BasicAuthGate
from exporter.serve.landing import index_page
from exporter.serve.reload import Reloader
from exporter.serve.replies import Reply, SharedReplies, send
from exporter.serve.webconfig import LiveWebConfig

log = logging.getLogger("exporter.app")

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
RENDER_THREADS = 2
INLINE_GZIP_BYTES = 64 * 1024  # a status page up to this size (~150 chargers) is compressed on the event loop
INDEX_FRESH_FOR = 1.0  # seconds an unchanged status page is served again (it says when it was rendered)
LIFECYCLE_DISABLED = (
    "Lifecycle API is not enabled: start the exporter with --web.enable-lifecycle to reload over HTTP, or send it "
    "SIGHUP\n"
)

Cleanup = Callable[[web.Application], Awaitable[None]]


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


class Exporter:
    """The running exporter: the aiohttp :attr:`app`, whose handlers are this object's methods, and what exists
    while it runs.

    Everything it works with arrives through the constructor: the ``fleet`` (the chargers' pollers and the HTTP
    session; the running config is ``fleet.config``, which a reload replaces), their ``health``, the ``reloader``,
    the ``registry`` of the metrics prometheus_client collects, and, with ``--web.config.file``, the basic-auth
    ``gate`` in front of every route (the live web config gives it its users; the reloader re-reads that config).
    ``lifecycle`` (``--web.enable-lifecycle``) allows ``POST /-/reload``; ``tune_gc`` tunes the process's garbage
    collector once started; ``cleanups`` close what the caller started for the app (the demo's in-process
    simulator). Only the app's lifecycle changes its state: the render threads (a pool of its own: the default one
    is shared with whatever else uses it, and nothing must hold up a reply), readiness, each route's last render
    time and the reloads in progress.
    """

    def __init__(
        self,
        fleet: Fleet,
        health: ExporterHealth,
        reloader: Reloader,
        registry: CollectorRegistry,
        *,
        gate: BasicAuthGate | None = None,
        lifecycle: bool = False,
        tune_gc: bool = False,
        cleanups: Sequence[Cleanup] = (),
    ) -> None:
        self.fleet = fleet
        self.health = health
        self.reloader = reloader
        self.registry = registry
        self.lifecycle = lifecycle
        self.render_pool: ThreadPoolExecutor | None = None
        self.ready = False
        self.last_render: dict[str, float] = {}  # route path -> seconds its last render took
        self.reloads: set[asyncio.Task[tuple[bool, str]]] = set()
        self.replies = SharedReplies()  # /metrics being assembled, shared by the scrapes that arrive meanwhile
        self.app = web.Application(middlewares=[gate.middleware] if gate is not None else [])
        self.app[EXPORTER] = self
        self.app.cleanup_ctx.append(self._running)
        if tune_gc:
            self.app.on_startup.append(self._tune_gc)  # after cleanup_ctx's start-up: the clients exist by then
        self.app.on_shutdown.append(self._not_ready)
        if gate is not None:
            self.app.on_cleanup.append(gate.close)
        self.app.on_cleanup.extend(cleanups)
        self.app.router.add_get("/", self.handle_index)
        self.app.router.add_get("/metrics", self.handle_metrics)
        self.app.router.add_get("/probe", self.handle_probe)
        self.app.router.add_get("/sd", self.handle_sd)
        self.app.router.add_get("/-/metrics", self.handle_own_metrics)
        self.app.router.add_get("/-/healthy", self.handle_healthy)
        self.app.router.add_get("/-/ready", self.handle_ready)
        self.app.router.add_post("/-/reload", self.handle_reload)

    def __repr__(self) -> str:
        return f"Exporter({self.fleet!r}, ready={self.ready}, reloads={len(self.reloads)})"

    async def _running(self, _: web.Application) -> AsyncIterator[None]:
        fleet = self.fleet
        fleet.start()
        self.render_pool = ThreadPoolExecutor(max_workers=RENDER_THREADS, thread_name_prefix="render")
        hup = self._install_sighup()
        self.ready = True
        log.info("polling %d charger(s) from %s", len(fleet.config.chargers), fleet.config.source)
        try:
            yield
        finally:
            self.ready = False
            if hup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            for task in list(self.reloads):
                task.cancel()
            self.reloader.cancel()
            await fleet.close()
            self.render_pool.shutdown(wait=False, cancel_futures=True)

    def _install_sighup(self) -> bool:
        """SIGHUP reloads the config, as for Prometheus itself (without a handler it would end the process)."""

        def on_hup() -> None:
            log.info("SIGHUP: reloading the config")
            self._start_reload()

        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_hup)
        except (NotImplementedError, RuntimeError, ValueError):  # no signals here (Windows, not the main thread)
            log.debug("cannot handle SIGHUP here; POST /-/reload still reloads the config")
            return False
        return True

    def _start_reload(self) -> asyncio.Task[tuple[bool, str]]:
        task = asyncio.create_task(self.reloader.reload(self.render_pool), name="config reload")
        self.reloads.add(task)
        task.add_done_callback(self.reloads.discard)
        return task

    async def _tune_gc(self, _: web.Application) -> None:
        """Once started: what exists now (modules, config, one client per charger) lives as long as the process, so
        the garbage collector need never look at it again (gc.freeze); and it runs less often. Together a large share
        of the CPU a scrape of many chargers costs (docs/benchmark/client_paths.md, with and without them)."""
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)

    async def _not_ready(self, _: web.Application) -> None:
        self.ready = False  # shutting down: say so on /-/ready while in-flight requests finish

    async def _poll(self, request: web.Request, pollers: Sequence[Poller]) -> list[Reading]:
        """This scrape's reading of each of ``pollers``' chargers, within the scrape's budget."""
        last_render = self.last_render.get(request.path, 0.0)  # /metrics renders far more than /probe
        return await self.fleet.read(pollers, scrape_budget(request, last_render))

    def _device_families(self, readings: Sequence[Reading]) -> list[Family]:
        """This scrape's families, built on the event loop, so that the render thread only reads them."""
        health = self.health
        results = [r.result for r in readings]
        # A charger removed by a reload during this scrape has no counters any more: it is not exported again.
        chargers = [r.charger for r in results if health.tracks(r.charger.name)]
        return [
            *device_families(results, on_error=health.exporter_error),
            *reading_age_families((r.result.charger, r.age) for r in readings),
            *health_families(health, chargers),
        ]

    async def _render(
        self,
        request: web.Request,
        families: Sequence[Family],
        started: float,
        extra: CollectorRegistry | None = None,
    ) -> web.StreamResponse:
        reply = await self._rendered(request, families, started, extra)
        return web.Response(body=reply.body, headers=reply.headers)

    async def _rendered(
        self,
        request: web.Request,
        families: Sequence[Family],
        started: float,
        extra: CollectorRegistry | None = None,
    ) -> Reply:
        """Render in the render threads: for thousands of chargers it takes long enough to stall other requests. A
        small exposition (a probe: one charger) is rendered right here, where it costs less than the thread hop."""
        accept = ",".join(request.headers.getall("Accept", []))
        headers: dict[str, str] = {}
        # gzip here too (Prometheus asks for it): aiohttp would compress in the default thread pool.
        gzipped = gzip_accepted(",".join(request.headers.getall("Accept-Encoding", [])))
        if gzipped:
            headers["Content-Encoding"] = "gzip"

        def render() -> tuple[bytes, str]:
            body, content_type = exposition(families, accept, extra)
            # Level 1: well under half of level 6's CPU for some more bytes (docs/benchmark/gzip-level.md).
            return (gzip.compress(body, compresslevel=1) if gzipped else body), content_type

        if extra is None and sum(len(family) for family in families) <= INLINE_RENDER_SAMPLES:
            body, headers["Content-Type"] = render()
        else:
            loop = asyncio.get_running_loop()
            body, headers["Content-Type"] = await loop.run_in_executor(self.render_pool, render)
        self.last_render[request.path] = time.perf_counter() - started
        return Reply(body, headers)

    async def handle_metrics(self, request: web.Request) -> web.StreamResponse:
        """Every charger. Concurrent scrapes share one assembly (:mod:`exporter.serve.replies`): 100 at once cost
        about what one does, and the reply goes out a piece at a time."""
        budget = scrape_budget(request, self.last_render.get(request.path, 0.0))
        deadline = None if budget is None else asyncio.get_running_loop().time() + budget
        _, content_type = choose_encoder(",".join(request.headers.getall("Accept", [])))
        key = (content_type, gzip_accepted(",".join(request.headers.getall("Accept-Encoding", []))))

        async def assemble() -> Reply:
            readings = await self.fleet.read(list(self.fleet.pollers.values()), budget)
            started = time.perf_counter()
            families = [*self._device_families(readings), *own_families(self.reloader)]
            return await self._rendered(request, families, started, extra=self.registry)

        return await send(request, await self.replies.get(key, deadline, assemble))

    async def handle_probe(self, request: web.Request) -> web.StreamResponse:
        target = request.query.get("target", "")
        if not target:
            raise web.HTTPBadRequest(text="missing 'target' parameter: the name of a configured charger\n")
        poller = self.fleet.pollers.get(target)
        if poller is None:
            # Never an open proxy: only configured charger *names* are accepted, and nothing is fetched otherwise.
            raise web.HTTPNotFound(text=f"unknown target {target[:64]!r}: not a configured charger name\n")
        readings = await self._poll(request, [poller])
        started = time.perf_counter()
        return await self._render(request, self._device_families(readings), started)

    async def handle_reload(self, _: web.Request) -> web.Response:
        """Re-read the config file: 200 with a summary, or 500 with every problem (the running config stays).
        Refused with 403 unless ``--web.enable-lifecycle`` (as Prometheus does): anyone who reaches the port could
        otherwise make the exporter re-read its files and secrets at will."""
        if not self.lifecycle:
            raise web.HTTPForbidden(text=LIFECYCLE_DISABLED)
        ok, message = await asyncio.shield(self._start_reload())
        if not ok:
            raise web.HTTPInternalServerError(text=message + "\n")
        return web.Response(text=f"config reloaded: {message}\n")

    async def handle_own_metrics(self, request: web.Request) -> web.StreamResponse:
        """The exporter's own metrics only (build info, process): contacts no charger, so it is cheap to scrape as
        the exporter's liveness target next to a /probe job."""
        return await self._render(request, own_families(self.reloader), time.perf_counter(), extra=self.registry)

    async def handle_sd(self, _: web.Request) -> web.Response:
        """Prometheus HTTP service discovery: one target group per charger, for the /probe pattern."""
        groups = []
        for charger in self.fleet.config.chargers:
            labels = {"__meta_pulsatrix_charger": charger.name}
            labels.update({f"__meta_pulsatrix_label_{k}": v for k, v in charger.labels})
            groups.append({"targets": [charger.name], "labels": labels})
        return web.json_response(groups)

    async def handle_healthy(self, _: web.Request) -> web.Response:
        return web.Response(text="Healthy.\n")

    async def handle_ready(self, _: web.Request) -> web.Response:
        if not self.ready:
            raise web.HTTPServiceUnavailable(text="Not ready.\n")
        return web.Response(text="Ready.\n")

    async def handle_index(self, request: web.Request) -> web.StreamResponse:
        """The status page (:mod:`exporter.serve.landing`): each charger Up / Partial / Down / Unmonitored, with its
        errors; gzipped for a client that takes it (10,000 chargers: 3.4 MB of HTML, ~80 KB gzipped), compressed in
        the render threads when it is large. Pages asked for within a second, with no poll completed meanwhile,
        share one rendering and one body."""
        gzipped = gzip_accepted(",".join(request.headers.getall("Accept-Encoding", [])))

        async def assemble() -> Reply:
            config = self.fleet.config
            statuses = self.health.statuses()
            page = index_page(config.chargers, statuses, version=__version__, source=config.source, now=time.time())
            body = page.encode()
            headers = {"Content-Type": "text/html; charset=utf-8", "Vary": "Accept-Encoding"}
            if gzipped:
                headers["Content-Encoding"] = "gzip"
                if len(body) <= INLINE_GZIP_BYTES:
                    body = gzip.compress(body, compresslevel=6)
                else:
                    loop = asyncio.get_running_loop()
                    body = await loop.run_in_executor(self.render_pool, gzip.compress, body, 6)
            return Reply(body, headers)

        # Served again only while no poll or reload has changed what it shows since.
        key = ("/", gzipped, self.health.generation)
        return await send(request, await self.replies.get(key, None, assemble, fresh_for=INDEX_FRESH_FOR))


EXPORTER = web.AppKey("exporter", Exporter)


def create_app(
    config: Config,
    *,
    config_path: str | Path | None = None,
    resolver: AbstractResolver | None = None,
    tune_gc: bool = False,
    enable_lifecycle: bool = False,
    web_config: LiveWebConfig | None = None,
    cleanups: Sequence[Cleanup] = (),
) -> web.Application:
    """Build the :class:`Exporter` for ``config`` and return its app.

    ``config_path`` is the file that SIGHUP and ``POST /-/reload`` re-read; by default the file ``config`` was
    loaded from (its ``source``), none for an in-memory config such as the demo's (a reload then says so).
    ``resolver`` replaces aiohttp's host-name resolver (tests use it). ``tune_gc`` tunes the process's garbage
    collector once started (the command line sets it: it owns the process). ``enable_lifecycle``
    (``--web.enable-lifecycle``) allows ``POST /-/reload``; without it the endpoint answers 403 (SIGHUP always
    reloads). ``web_config`` (``--web.config.file``) puts its basic-auth gate in front of every route, and is read
    again on each reload; the gate is there even without users: a reload may add them (until then it lets every
    request pass). ``cleanups`` run when the app stops.
    """
    if config_path is None and not config.source.startswith("<"):
        config_path = config.source
    health = ExporterHealth(config.chargers)
    fleet = Fleet(config, health, resolver)
    also = (web_config.reload,) if web_config is not None else ()
    reloader = Reloader(Path(config_path) if config_path is not None else None, fleet, also=also)
    exporter = Exporter(
        fleet,
        health,
        reloader,
        own_registry(),
        gate=web_config.gate if web_config is not None else None,
        lifecycle=enable_lifecycle,
        tune_gc=tune_gc,
        cleanups=cleanups,
    )
    return exporter.app
