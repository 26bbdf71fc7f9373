"""Command line: parse arguments, load the config, run the app (or the simulator)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from aiohttp import web

from exporter import __version__
from exporter.config import ConfigError, demo_config, load_config

DEFAULT_PORT = 9821
DEFAULT_LISTEN = f"0.0.0.0:{DEFAULT_PORT}"
DEFAULT_SIM_LISTEN = "127.0.0.1:8080"
CONFIG_ENV = "PULSATRIX_EXPORTER_CONFIG"

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pulsatrix-exporter",
        description="Prometheus exporter for pulsatrix EV charging controllers. With no --config (and no "
        f"${CONFIG_ENV}) it runs against built-in simulated chargers (--demo).",
    )
    parser.add_argument("--version", action="version", version=f"pulsatrix-exporter {__version__}")
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=os.environ.get(CONFIG_ENV),
        help=f"YAML config file (default: ${CONFIG_ENV}; none: demo mode)",
    )
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        type=parse_listen,
        default=parse_listen(DEFAULT_LISTEN),
        help=f"address to serve /metrics on (default: {DEFAULT_LISTEN})",
    )
    parser.add_argument("--check-config", action="store_true", help="validate the config, print a summary, exit 0/1")
    parser.add_argument("--demo", action="store_true", help="export simulated chargers started in-process")
    parser.add_argument(
        "--demo-chargers",
        metavar="N",
        type=positive_int,
        default=3,
        help="simulated chargers in demo mode (3)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log level (default: info)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sim = sub.add_parser("simulate", help="serve simulated pulsatrix chargers (the device API) for tests and demos")
    sim.add_argument(
        "--listen",
        metavar="HOST:PORT",
        type=parse_listen,
        default=parse_listen(DEFAULT_SIM_LISTEN),
        help=f"address to serve on (default: {DEFAULT_SIM_LISTEN})",
    )
    sim.add_argument("--chargers", metavar="N", type=positive_int, default=3, help="number of chargers (3)")
    sim.add_argument("--speed", type=positive_float, default=1.0, help="divide session durations by this factor (1)")
    sim.add_argument("--seed", type=int, default=1, help="random seed (1)")
    sim.add_argument("--basic", metavar="USER:PASSWORD_ENV", help="require HTTP basic auth; password from env var")
    sim.add_argument("--bearer", metavar="TOKEN_ENV", help="require a bearer token, read from this env var")
    sim.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"], help="log level (info)"
    )
    return parser


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


async def _demo_app(n: int, speed: float) -> web.Application:
    from exporter.app import create_app
    from exporter.simulator import SITES, start_simulator

    runner, base_url, names = await start_simulator("127.0.0.1", 0, n=n, speed=speed)
    labels = {name: {"site": SITES[i % len(SITES)]} for i, name in enumerate(names)}
    config = demo_config(base_url, names, labels)
    log.info("demo mode: %d simulated charger(s) at %s (no config file given)", n, base_url)
    app = create_app(config)

    async def stop_simulator(_: web.Application) -> None:
        await runner.cleanup()

    app.on_cleanup.append(stop_simulator)
    return app


def _run_simulator(args: argparse.Namespace) -> int:
    from exporter.simulator import SIM_BACKLOG, SimAuth, create_simulator_app

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
    app = create_simulator_app(args.chargers, speed=args.speed, seed=args.seed, auth=auth)
    host, port = args.listen
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
    for name in app_names(app):
        print(f"  - name: {name}\n    url: http://{shown}:{port}/{name}", flush=True)
    web.run_app(app, host=host, port=port, access_log=None, print=None, shutdown_timeout=2.0, backlog=SIM_BACKLOG)
    return 0


def app_names(app: web.Application) -> list[str]:
    from exporter.simulator import SIMULATOR

    return list(app[SIMULATOR].chargers)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    if args.command == "simulate":
        return _run_simulator(args)

    host, port = args.listen
    if args.config and not args.demo:
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            print(exc.render(), file=sys.stderr)
            return 1
        if args.check_config:
            print(config.summary())
            return 0
        from exporter.app import create_app

        log.info("pulsatrix-exporter %s listening on %s:%d", __version__, host, port)
        web.run_app(create_app(config, tune_gc=True), host=host, port=port, access_log=None, print=None)
        return 0
    if args.check_config:
        print("--check-config needs --config FILE (or $" + CONFIG_ENV + ")", file=sys.stderr)
        return 1
    log.info("pulsatrix-exporter %s listening on %s:%d", __version__, host, port)
    web.run_app(_demo_app(args.demo_chargers, speed=10.0), host=host, port=port, access_log=None, print=None)
    return 0
