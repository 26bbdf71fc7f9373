"""``pulsatrix-exporter report sessions|summary``: arguments, the run, the rows, the exit codes.

Exit 0 with the rows (a period without data prints the header and a note on stderr), 1 when the server cannot be
reached or refuses (one line naming it), 2 for a usage error. No traceback reaches the user and no credential
reaches any output: the password and token are read from files or the environment and only sent as a header.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from exporter.report import deliver, identity
from exporter.report.client import MAX_ANSWER_BYTES, Auth, PromClient, QueryError, answer_size
from exporter.report.costs import price_history
from exporter.report.outfile import OutputError, ReportInfo
from exporter.report.output import Row
from exporter.report.periods import Period, UsageError, period_from_args
from exporter.report.queries import FOLLOW, History, fetch_history
from exporter.report.rows import label_columns, session_rows, summary_rows

PASSWORD_ENV = "PULSATRIX_REPORT_PASSWORD"  # noqa: S105 (the name of a variable)
TOKEN_ENV = "PULSATRIX_REPORT_TOKEN"  # noqa: S105
MATCHER = re.compile(r"""^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')\s*$""")
LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pulsatrix-exporter report",
        description="Energy ledger read back from Prometheus or VictoriaMetrics: every charging session, or each "
        "charger's (site's, label's) kWh and cost in a period. See README, Energy reports.",
    )
    sub = parser.add_subparsers(dest="view", metavar="sessions|summary", parser_class=_Parser)
    sub.required = True
    for view, text in (
        ("sessions", "one row per session that started in the period"),
        ("summary", "per charger (or --by site/LABEL): the meter's rise in the period, sessions, cost"),
    ):
        p = sub.add_parser(view, help=text, description=text)
        _common(p)
        if view == "summary":
            p.add_argument(
                "--by",
                default="charger",
                metavar="charger|site|LABEL",
                help="group rows by this label (default: charger)",
            )
    return parser


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--prometheus",
        required=True,
        metavar="URL",
        help="Prometheus HTTP API base URL (Prometheus, VictoriaMetrics, Thanos Query, Mimir)",
    )
    p.add_argument("--start", metavar="T", help="RFC 3339 time or date (local midnight in --tz)")
    p.add_argument("--end", metavar="T", help="RFC 3339 time or date, exclusive")
    p.add_argument("--month", metavar="YYYY-MM|last|this", help="that calendar month in --tz")
    p.add_argument("--year", metavar="YYYY|last|this", help="that calendar year in --tz")
    p.add_argument(
        "--tz", metavar="ZONE", help="IANA time zone for periods and times (default: the machine's, from TZ or /etc)"
    )
    p.add_argument(
        "--match",
        action="append",
        default=[],
        metavar="MATCHER",
        help="label matcher such as 'site=\"depot-3\"' (repeatable; all must hold)",
    )
    deliver.add_arguments(p, _price)
    p.add_argument("--basic-user", metavar="USER", help="HTTP basic auth user")
    p.add_argument(
        "--basic-password-file", metavar="FILE", help=f"file holding the basic auth password (or set ${PASSWORD_ENV})"
    )
    p.add_argument("--bearer-token-file", metavar="FILE", help=f"file holding a bearer token (or set ${TOKEN_ENV})")
    p.add_argument("--ca-file", metavar="FILE", help="CA bundle (PEM) to verify the server's TLS certificate")
    p.add_argument(
        "--lookback",
        type=_duration,
        default=300.0,
        metavar="SECONDS",
        help="how far back a sample still counts (300; above your scrape interval)",
    )
    p.add_argument("--timeout", type=_duration, default=120.0, metavar="SECONDS", help="per whole request (120)")
    p.add_argument(
        "--max-answer-size",
        type=answer_size,
        default=MAX_ANSWER_BYTES,
        metavar="SIZE",
        help=f"refuse an answer larger than this (default {MAX_ANSWER_BYTES >> 20}MiB; e.g. 1GiB)",
    )
    p.add_argument(
        "--source",
        choices=("auto", "rules", "raw"),
        default="auto",
        help="rules: the ledger recording rules' change series (fast); raw: the exporter's series; auto (default): "
        "rules where their heartbeat covers the whole span, raw otherwise",
    )
    p.add_argument(
        "--replica-label",
        action="append",
        default=[],
        metavar="NAME",
        help="a label that tells an HA pair's copies apart (repeatable; prometheus_replica and replica always are)",
    )


def _price(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a price of 0 or more, got {text!r}")
    return value


def _duration(text: str) -> float:
    try:
        value = float(text.removesuffix("s"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 < value <= 86_400 * 31:
        raise argparse.ArgumentTypeError(f"expected 1 s to 31 days, got {text!r}")
    return value


def matchers(raw: Sequence[str]) -> list[str]:
    out = []
    for text in raw:
        m = MATCHER.match(text)
        if not m:
            raise UsageError(f"--match: {text!r} is not a label matcher such as 'site=\"depot-3\"'")
        if m.group(1) == "__name__":
            raise UsageError("--match: the metric name is chosen by the report; match on labels only")
        out.append(f"{m.group(1)}{m.group(2)}{m.group(3)}")
    return out


def _secret(path: str | None, env: str, flag: str) -> str | None:
    if path is not None:
        try:
            value = Path(path).read_text().strip()
        except OSError as exc:
            raise UsageError(f"{flag}: cannot read {path!r} ({exc.strerror})") from None
        if not value:
            raise UsageError(f"{flag}: {path!r} is empty")
        return value
    return os.environ.get(env) or None


def auth_from_args(args: argparse.Namespace) -> Auth:
    password = _secret(args.basic_password_file, PASSWORD_ENV, "--basic-password-file")
    token = _secret(args.bearer_token_file, TOKEN_ENV, "--bearer-token-file")
    if args.basic_user and token and args.bearer_token_file:
        raise UsageError("give basic auth or a bearer token, not both")
    if args.basic_user:
        if password is None:
            raise UsageError(f"--basic-user needs --basic-password-file FILE or ${PASSWORD_ENV}")
        return Auth(basic=(args.basic_user, password), ca_file=args.ca_file)
    if args.basic_password_file:
        raise UsageError("--basic-password-file needs --basic-user")
    if args.ca_file is not None and not Path(args.ca_file).is_file():
        raise UsageError(f"--ca-file: cannot read {args.ca_file!r}")
    return Auth(bearer=token, ca_file=args.ca_file)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    now = time.time()
    try:
        period = period_from_args(args.start, args.end, args.month, args.year, args.tz, now=now)
        selectors = matchers(args.match)
        if args.view == "summary" and not LABEL.match(args.by):
            raise UsageError(f"--by: {args.by!r} is not a label name")
        for name in args.replica_label:
            if not LABEL.match(name):
                raise UsageError(f"--replica-label: {name!r} is not a label name")
        tariff = deliver.check_args(args, period)
        auth = auth_from_args(args)
        try:
            client = PromClient(args.prometheus, auth, timeout=args.timeout, max_bytes=args.max_answer_size)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    except UsageError as exc:
        return _usage(parser, str(exc))
    try:
        pricing = deliver.pricing_from_args(args, tariff, client, period, min(now, period.end + FOLLOW))
        history = fetch_history(
            client,
            period,
            selectors,
            lookback=args.lookback,
            now=now,
            source=args.source,
            replica_labels=args.replica_label,
        )
        costs = None
        if pricing.prices is not None:
            drop = identity.dropped(args.replica_label)
            costs = price_history(client, history, period, pricing.prices, selectors, args.lookback, drop)
    except deliver.PriceSeriesError as exc:
        return _usage(parser, str(exc))
    except QueryError as exc:
        print(f"pulsatrix-exporter report: {exc}", file=sys.stderr)
        return 1
    if args.view == "sessions":
        columns, rows = session_rows(history, period, costs, pricing.currency)
    else:
        columns, rows = summary_rows(history, period, args.by, costs, pricing.currency)
    for note in history.notes:
        print(f"pulsatrix-exporter report: {note}", file=sys.stderr)
    if history.chargers:
        print(f"pulsatrix-exporter report: source: {history.source}", file=sys.stderr)
    chargers: list[Row] = []
    sessions: list[Row] = []
    if deliver.wants_statement(args, period):  # the statement shows the sessions and each charger's summary
        _, chargers = summary_rows(history, period, identity.NAME, costs, pricing.currency)
        _, sessions = session_rows(history, period, costs, pricing.currency)
    info = report_info(args, period, client, history, pricing, [*rows, *chargers, *sessions], now)

    def statement() -> tuple[list[Row], list[Row], list[str]]:
        return sessions, chargers, label_columns(history)

    try:
        deliver.emit(args, period, info, columns, rows, statement, json_extra={"source": history.source})
    except OutputError as exc:
        print(f"pulsatrix-exporter report: {exc}", file=sys.stderr)
        return 1
    if not rows:
        print(
            f"pulsatrix-exporter report: no {args.view} in {period.label} at {client.shown} for the given "
            "matchers (nothing stored, or the matchers select no charger)",
            file=sys.stderr,
        )
    return 0


def _usage(parser: argparse.ArgumentParser, message: str) -> int:
    parser.print_usage(sys.stderr)
    print(f"pulsatrix-exporter report: error: {message}", file=sys.stderr)
    return 2


def report_info(
    args: argparse.Namespace,
    period: Period,
    client: PromClient,
    history: History,
    pricing: deliver.Pricing,
    rows: Sequence[Row],
    now: float,
) -> ReportInfo:
    flags = dict.fromkeys(f for row in rows for f in str(row.get("flags") or "").split())
    return ReportInfo(
        view=args.view,
        period=period.label,
        start=period.start,
        end=period.end,
        zone=period.zone,
        zone_name=getattr(period.zone, "key", None) or str(period.zone),
        server=client.shown,
        source=history.source,
        pricing=pricing.text,
        currency=pricing.currency,
        generated=now,
        matchers=tuple(args.match),
        flags=tuple(flags),
    )
