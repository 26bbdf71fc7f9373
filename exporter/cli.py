"""Command line: parse arguments, load the config, run the app (or the simulator)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from exporter import __version__
from exporter.config import Config, ConfigError, demo_config, load_config
from exporter.config.web import WebConfig, WebConfigError, load_web_config
from exporter.eventloop import EventLoop
from exporter.eventloop import choose as choose_loop
from exporter.serve.bind import DEFAULT_MAX_CONNECTIONS, RESERVED_FDS, BindError, bind, url
from exporter.serve.serverlog import hide_malformed_requests

if TYPE_CHECKING:  # aiohttp is imported where the exporter serves: --check-config runs faster without it
    from aiohttp import web

    from exporter.serve.webconfig import LiveWebConfig

DEFAULT_PORT = 9821
DEFAULT_LISTEN = f"0.0.0.0:{DEFAULT_PORT}"
DEFAULT_SIM_LISTEN = "127.0.0.1:8080"
CONFIG_ENV = "PULSATRIX_EXPORTER_CONFIG"
DEFAULT_DEMO_CHARGERS = 3
DEFAULT_SIM_CHARGERS = 3
# SIGTERM stops accepting connections, then lets the scrapes in flight finish: they end by their chargers'
# deadlines, so the wait is only as long as they take, but at most 25 s (Kubernetes kills after 30 s by default;
# systemd after 90 s). Not sized from the config at start: a reload may have raised the timeouts since. aiohttp
# waits up to shutdown_timeout for the handlers, then cancels the requests and waits up to shutdown_timeout again.
SHUTDOWN_TIMEOUT = 12.5
# Label on every series of a simulated charger: fake data must never pass for real data.
SIMULATED_LABELS = {"simulated": "true"}
NO_CONFIG_MESSAGE = (
    "pulsatrix-exporter: no config file given, so there is nothing to export. Pass one with --config FILE (or set "
    f"${CONFIG_ENV} to its path; see README, Configuration), check it first with --config FILE --check-config, or "
    "try the exporter against built-in simulated chargers with: pulsatrix-exporter --demo"
)

log = logging.getLogger("exporter")


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``[v6]:PORT``."""
    host, sep, port_text = value.rpartition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    try:
        port = int(port_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number, got {port_text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {port}")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104
    return host, port


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if not 1 <= number <= 10_000:
        raise argparse.ArgumentTypeError(f"expected 1-10000, got {number}")
    return number


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not 0 < number <= 10_000:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {number:g}")
    return number


def connection_count(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if not 1 <= number <= 1_000_000:
        raise argparse.ArgumentTypeError(f"expected 1-1000000, got {number}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pulsatrix-exporter",
        description="Prometheus exporter for pulsatrix EV charging controllers. Needs a config file (--config "
        f"FILE or ${CONFIG_ENV}); --demo instead exports built-in simulated chargers, labelled simulated=\"true\".",
    )
    parser.add_argument("--version", action="version", version=f"pulsatrix-exporter {__version__}")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help=f"YAML config file (default: ${CONFIG_ENV}); required unless --demo",
    )
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        type=parse_listen,
        default=parse_listen(DEFAULT_LISTEN),
        help=f"address to serve /metrics on (default: {DEFAULT_LISTEN})",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="FILE",
        help="exporter-toolkit web config: TLS (tls_server_config) and basic auth (basic_auth_users) for this port",
    )
    parser.add_argument(
        "--web.max-connections",
        dest="web_max_connections",
        metavar="N",
        type=connection_count,
        help="connections to this port at once; at the cap a new one closes the oldest idle one (default: "
        f"{DEFAULT_MAX_CONNECTIONS}, or what the fd limit leaves after 4 per charger and {RESERVED_FDS} spare)",
    )
    parser.add_argument(
        "--web.enable-lifecycle",
        dest="web_enable_lifecycle",
        action="store_true",
        help="allow POST /-/reload (refused with 403 otherwise, as in Prometheus); SIGHUP always reloads",
    )
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="validate the config (and --web.config.file), print a summary, exit 0/1",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help=f"export simulated chargers started in-process instead of a config (ignores ${CONFIG_ENV})",
    )
    parser.add_argument(
        "--demo-chargers",
        metavar="N",
        type=positive_int,
        help=f"simulated chargers in demo mode ({DEFAULT_DEMO_CHARGERS})",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log level (default: info)",
    )
    add_event_loop_argument(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # `report` has its own parser (exporter.report.command); listed here so that --help names it.
    sub.add_parser("report", help="energy ledger: sessions and per-period kWh and cost from Prometheus (report -h)")
    sim = sub.add_parser("simulate", help="serve simulated pulsatrix chargers (the device API) for tests and demos")
    sim.add_argument(
        "--listen",
        metavar="HOST:PORT",
        type=parse_listen,
        default=parse_listen(DEFAULT_SIM_LISTEN),
        help=f"address to serve on (default: {DEFAULT_SIM_LISTEN})",
    )
    sim.add_argument("--chargers", metavar="N", type=positive_int, help="number of generated chargers (3)")
    sim.add_argument(
        "--speed",
        type=positive_float,
        default=1.0,
        help="divide session durations by this factor; with --script, run the simulated clock this much faster (1)",
    )
    sim.add_argument(
        "--script",
        metavar="FILE",
        help="serve the chargers of this YAML session script, charging exactly as it says (instead of --chargers)",
    )
    sim.add_argument(
        "--session-log",
        metavar="FILE",
        help="with --script: write each session start and stop to FILE as a JSON line, as it happens",
    )
    sim.add_argument("--seed", type=int, default=1, help="random seed (1)")
    sim.add_argument("--basic", metavar="USER:PASSWORD_ENV", help="require HTTP basic auth; password from env var")
    sim.add_argument("--bearer", metavar="TOKEN_ENV", help="require a bearer token, read from this env var")
    sim.add_argument(
        "--faults",
        action="store_true",
        help="also serve the fault-injection routes (GET /_sim, PUT /_sim/NAME) and count requests, for tests",
    )
    sim.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"], help="log level (info)"
    )
    add_event_loop_argument(sim)
    return parser


def add_event_loop_argument(parser: argparse.ArgumentParser) -> None:
    from exporter.eventloop import CHOICES, ENV

    parser.add_argument(
        "--event-loop",
        metavar="LOOP",
        default=None,
        help=f"asyncio event loop: {', '.join(CHOICES)} (default: ${ENV}, else auto: uvloop where installed)",
    )


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    hide_malformed_requests()


async def _demo_app(
    n: int, speed: float, *, enable_lifecycle: bool = False, web_config: LiveWebConfig | None = None
) -> web.Application:
    from exporter.serve.app import create_app
    from exporter.simulator import site_of, start_simulator

    runner, base_url, names = await start_simulator("127.0.0.1", 0, n=n, speed=speed)
    labels = {name: {"site": site_of(i), **SIMULATED_LABELS} for i, name in enumerate(names)}
    config = demo_config(base_url, names, labels)
    log.warning(
        "DEMO MODE: exporting %d simulated charger(s) served in-process at %s, not real devices; every charger series "
        'carries simulated="true"',
        n,
        base_url,
    )

    async def stop_simulator(_: web.Application) -> None:
        await runner.cleanup()

    return create_app(config, enable_lifecycle=enable_lifecycle, web_config=web_config, cleanups=[stop_simulator])


def _run_simulator(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from exporter.simulator import SIM_BACKLOG, SimAuth, base_url, config_snippet, create_simulator_app
    from exporter.simulator.script import ScriptError, load_script

    if args.script is not None and args.chargers is not None:
        parser.error("simulate: --chargers and --script both say which chargers to serve; use one or the other")
    if args.session_log is not None and args.script is None:
        parser.error("simulate: --session-log logs scripted sessions and needs --script FILE")
    auth = SimAuth()
    if args.basic:
        user, _, env = args.basic.partition(":")
        if not user or not env or env not in os.environ:
            print("--basic needs USER:ENV_VAR with ENV_VAR set to the password", file=sys.stderr)
            return 2
        auth.basic = (user, os.environ[env])
    if args.bearer:
        if args.bearer not in os.environ:
            print(f"--bearer: environment variable {args.bearer!r} is not set", file=sys.stderr)
            return 2
        auth.bearer = os.environ[args.bearer]
    try:
        script = load_script(args.script) if args.script is not None else None
    except ScriptError as exc:
        print(exc.message(), file=sys.stderr)
        return 1
    try:
        app = create_simulator_app(
            args.chargers or DEFAULT_SIM_CHARGERS,
            speed=args.speed,
            seed=args.seed,
            auth=auth,
            faults=args.faults,
            script=script,
            session_log=args.session_log,
        )
    except OSError as exc:  # only the session log is opened here
        print(f"{args.session_log}: cannot write session log: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if script is not None:
        sessions = sum(len(c.sessions) for c in script.chargers)
        shown = (sessions, len(script.chargers), args.speed)
        log.info("simulate: %d scripted session(s) on %d charger(s), simulated clock at %g x real time", *shown)
    host, port = args.listen
    try:
        sockets = bind(host, port, backlog=SIM_BACKLOG, in_use_hint="is another simulator still running on it?")
    except BindError as exc:
        print(f"pulsatrix-exporter simulate: {exc}", file=sys.stderr)
        return 1
    port = sockets[0].getsockname()[1]  # the port bound, for --listen HOST:0 too
    log.info("simulate: listening on %s", ", ".join(url("http", sock) for sock in sockets))
    user, _, env = (args.basic or "").partition(":")
    basic = (user, env) if args.basic else None  # the snippet names the variable, never prints the secret
    print(config_snippet(app_names(app), base_url(host, port), basic=basic, bearer_env=args.bearer), flush=True)
    from aiohttp import web

    log.info("simulate: event loop: %s", args.loop.describe())
    web.run_app(app, sock=sockets, access_log=None, print=None, shutdown_timeout=2.0, loop=args.loop.new_loop())
    return 0


def app_names(app: web.Application) -> list[str]:
    from exporter.simulator import SIMULATOR

    return list(app[SIMULATOR].chargers)


def _config_path(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str | None:
    """Where the config comes from, after refusing flag combinations that mean two different things.

    ``--demo`` and an explicit ``--config`` contradict each other; ``$PULSATRIX_EXPORTER_CONFIG`` is only a default
    (the container image always sets it), so ``--demo`` overrides it. ``--check-config`` checks a config file, which
    the demo does not have.
    """
    if args.config == "":
        parser.error("--config needs a file name")
    if args.demo:
        if args.config is not None:
            parser.error("--demo runs simulated chargers and takes no --config FILE; use one or the other")
        if args.check_config:
            parser.error("--check-config checks a config file (--config FILE); --demo has none")
        return None
    if args.demo_chargers is not None:
        parser.error("--demo-chargers only applies with --demo")
    return args.config if args.config is not None else (os.environ.get(CONFIG_ENV) or None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["report"]:
        from exporter.report.command import main as report_main

        return report_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    from exporter.eventloop import ENV, EventLoopError

    try:
        args.loop = choose_loop(args.event_loop or os.environ.get(ENV) or "auto")
    except EventLoopError as exc:
        parser.error(str(exc))
    if args.command == "simulate":
        return _run_simulator(args, parser)

    config_path = _config_path(args, parser)
    if not args.demo and config_path is None:
        print(NO_CONFIG_MESSAGE, file=sys.stderr)
        return 2
    errors: list[str] = []
    config: Config | None = None
    web_config: WebConfig | None = None
    if config_path is not None:
        try:
            config = load_config(config_path)
        except ConfigError as exc:
            errors.append(exc.message())
    if args.web_config_file is not None:
        try:
            web_config = load_web_config(args.web_config_file)
        except WebConfigError as exc:
            errors.append(exc.message())
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 1
    if args.check_config and config is not None:  # _config_path refuses --check-config without a config
        print(config.summary())
        if web_config is not None:
            print(web_config.summary())
        return 0

    from exporter.scrape.fetch import connection_limit
    from exporter.serve.webconfig import LiveWebConfig

    live = LiveWebConfig(web_config.source, web_config) if web_config is not None else None
    if config is None:
        if os.environ.get(CONFIG_ENV):
            log.info("--demo: ignoring $%s", CONFIG_ENV)
        chargers = args.demo_chargers or DEFAULT_DEMO_CHARGERS
        lifecycle = args.web_enable_lifecycle
        app: Callable[[], Awaitable[web.Application]] = lambda: _demo_app(  # noqa: E731
            chargers, speed=10.0, enable_lifecycle=lifecycle, web_config=live
        )
        charger_sockets = 2 * connection_limit(chargers, None)  # the in-process simulator's end of them too
    else:
        from exporter.serve.app import create_app

        made = create_app(config, tune_gc=True, enable_lifecycle=args.web_enable_lifecycle, web_config=live)
        app = lambda: _ready(made)  # noqa: E731
        charger_sockets = connection_limit(len(config.chargers), config.max_concurrency)
    return _serve(
        app,
        args.listen,
        live,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        max_connections=args.web_max_connections,
        charger_sockets=charger_sockets,
        loop=args.loop,
        in_use_hint=IN_USE_DEMO if config is None else IN_USE_EXPORTER,
    )


IN_USE_DEMO = "a --demo left running?"
IN_USE_EXPORTER = "is another pulsatrix-exporter still running on it?"


async def _ready(app: web.Application) -> web.Application:
    return app


def _serve(
    make_app: Callable[[], Awaitable[web.Application]],
    listen: tuple[str, int],
    live: LiveWebConfig | None,
    *,
    shutdown_timeout: float,
    max_connections: int | None = None,
    charger_sockets: int = 0,
    loop: EventLoop | None = None,
    in_use_hint: str = "",
) -> int:
    """Bind, then serve until SIGTERM/SIGINT: 0, or 1 with one line on stderr when the address cannot be bound."""
    host, port = listen
    from exporter.memory import pin_mmap_threshold
    from exporter.serve.server import default_max_connections, raise_fd_limit, run

    pin_mmap_threshold()
    fd_limit = raise_fd_limit()
    cap = max_connections or default_max_connections(fd_limit, charger_sockets)
    needed = cap + charger_sockets + RESERVED_FDS
    if max_connections is None:  # the default follows the chargers polled: all of them, or a sharded replica's share
        cap = default_max_connections(fd_limit, 0)
    if needed > fd_limit:
        log.warning(
            "fd limit %d is below the %d this exporter may need (%d connections to its port, %d to the chargers, "
            "%d spare): chargers may fail with exporter_fds; raise LimitNOFILE or lower --web.max-connections",
            fd_limit,
            needed,
            cap,
            charger_sockets,
            RESERVED_FDS,
        )
    ssl_context = live.ssl_context if live is not None else None
    if live is not None and live.config.users and ssl_context is None:
        log.warning("basic auth without TLS: passwords cross the network readable; add tls_server_config")
    scheme = "https" if ssl_context is not None else "http"
    try:
        sockets = bind(host, port, in_use_hint=in_use_hint)
    except BindError as exc:
        print(f"pulsatrix-exporter: {exc}", file=sys.stderr)
        return 1
    log.info(
        "pulsatrix-exporter %s listening on %s (at most %d connections; fd limit %d)",
        __version__,
        ", ".join(url(scheme, sock) for sock in sockets),
        cap,
        fd_limit,
    )
    loop = loop or choose_loop()
    log.info("event loop: %s", loop.describe())
    run(
        make_app(),
        sockets,
        ssl_context=ssl_context,
        shutdown_timeout=shutdown_timeout,
        max_connections=max_connections,  # None: the default, recomputed as chargers are polled (sharded replicas)
        fd_limit=fd_limit,
        new_loop=loop.new_loop,
    )
    log.info("stopped")
    return 0
