"""The report's pricing and delivery options: ``--price | --tariff FILE | --price-series EXPR``, ``--currency``,
``--format``, ``--output FILE`` and ``--force``; checked before any query, so a bad file or a refused target costs
nothing and writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporter.report.client import PromClient
from exporter.report.outfile import OutputError, ReportInfo, check_target, write_atomic
from exporter.report.output import render
from exporter.report.periods import Period, UsageError
from exporter.report.pricequeries import PriceSeriesError, fetch_price_series
from exporter.report.pricing import Constant, Prices
from exporter.report.tariff import TariffError, TariffFile, TariffSchedule, load_tariff

FORMATS = ("csv", "json", "table", "xlsx", "html")


def add_arguments(p: argparse.ArgumentParser, price_type: Callable[[str], float]) -> None:
    p.add_argument(
        "--format",
        choices=FORMATS,
        help="csv (default), json, table; xlsx (a spreadsheet) and html (a printable statement) need --output; "
        "with --output the file's extension (.csv, .json, .xlsx, .html) chooses when --format is not given",
    )
    p.add_argument(
        "--output",
        action="append",
        default=[],
        metavar="FILE",
        help="write to FILE (atomically) instead of standard output; repeatable (one query, several files); "
        "{period} in the name is the period (2026-03)",
    )
    p.add_argument("--force", action="store_true", help="with --output: replace FILE if it exists")
    prices = p.add_mutually_exclusive_group()
    prices.add_argument("--price", type=price_type, metavar="PER_KWH", help="one price per kWh: adds cost columns")
    prices.add_argument(
        "--tariff", metavar="FILE", help="a time-of-use tariff (YAML: prices by local time, days and dates)"
    )
    prices.add_argument(
        "--price-series",
        metavar="EXPR",
        help="PromQL returning one series, the price per kWh over time (e.g. a day-ahead price exporter's)",
    )
    p.add_argument("--currency", help="currency named beside the cost (EUR, or the tariff file's)")


@dataclass(frozen=True, slots=True)
class Pricing:
    prices: Prices | None
    currency: str | None
    text: str  # what the files say about it


def outputs(args: argparse.Namespace, period: Period) -> list[tuple[str, str]]:
    """(file, format) for every ``--output``: ``{period}`` filled in; the format is ``--format``'s or, without it,
    the extension's."""
    name = period.label.replace(" .. ", "--").replace("/", "-").replace(" ", "")
    out = []
    for raw in args.output:
        path = raw.replace("{period}", name)
        suffix = Path(path).suffix.lower().lstrip(".")
        fmt = args.format or (suffix if suffix in FORMATS and suffix != "table" else None)
        if fmt is None:
            raise UsageError(f"--output {raw}: give --format, or a name ending .csv, .json, .xlsx or .html")
        out.append((path, fmt))
    if args.format and len(out) > 1:
        raise UsageError("with several --output files each one's format is its extension's: leave out --format")
    return out


def check_args(args: argparse.Namespace, period: Period) -> TariffFile | None:
    """Usage errors found without the server; the tariff file read (its problems are usage errors)."""
    if args.format == "xlsx" and not args.output:
        raise UsageError("--format xlsx needs --output FILE (a spreadsheet is not written to a terminal)")
    if args.force and not args.output:
        raise UsageError("--force needs --output FILE")
    files = outputs(args, period)
    if len({path for path, _ in files}) < len(files):
        raise UsageError("--output: the same file is named twice")
    for path, _ in files:
        try:
            check_target(path, args.force)
        except OutputError as exc:
            raise UsageError(str(exc)) from None
    if args.currency is not None and not (len(args.currency) == 3 and args.currency.isalpha()):
        raise UsageError(f"--currency: expected a three-letter code such as EUR, got {args.currency!r}")
    if args.tariff is None:
        return None
    try:
        tariff = load_tariff(args.tariff)
    except TariffError as exc:
        raise UsageError(f"--tariff: {exc}") from None
    if args.currency and tariff.currency and args.currency != tariff.currency:
        raise UsageError(f"--currency {args.currency} contradicts the tariff file's currency {tariff.currency}")
    return tariff


def pricing_from_args(
    args: argparse.Namespace, tariff: TariffFile | None, client: PromClient, period: Period, horizon: float
) -> Pricing:
    """The prices in force; a price series is read here (:class:`PriceSeriesError` unless it is one series)."""
    if args.price is not None:
        currency = args.currency or "EUR"
        return Pricing(Constant(args.price), currency, f"{args.price:g} {currency}/kWh at every hour (--price)")
    if tariff is not None:
        currency = args.currency or tariff.currency or "EUR"
        return Pricing(TariffSchedule(tariff, period.zone), currency, f"tariff {args.tariff}: {tariff.describe()}")
    if args.price_series is not None:
        series = fetch_price_series(client, args.price_series, period.start, horizon)
        currency = args.currency or "EUR"
        shown = f" ({series.labels})" if series.labels else ""
        text = f"price series {args.price_series}{shown}: its last sample at or before each moment, per kWh"
        return Pricing(series, currency, text)
    return Pricing(None, None, "none (no cost)")


Statement = tuple[Sequence[dict[str, Any]], Sequence[dict[str, Any]], Sequence[str]]


def emit(
    args: argparse.Namespace,
    period: Period,
    info: ReportInfo,
    columns: Sequence[str],
    rows: Sequence[dict[str, Any]],
    statement: Callable[[], Statement],
    json_extra: dict[str, Any] | None = None,
) -> None:
    """Every ``--output`` file (each atomically), or standard output in ``--format`` (csv). ``json_extra``: columns
    only JSON carries (a JSON reader sees which series the figures came from)."""
    extra = json_extra or {}

    def content(fmt: str) -> str | bytes:
        if fmt == "json" and extra:
            return render([{**row, **extra} for row in rows], [*columns, *extra], fmt)
        return render_file(fmt, info, columns, rows, statement)

    files = outputs(args, period)
    if not files:
        sys.stdout.write(str(content(args.format or "csv")))
        return
    for path, fmt in files:
        data = content(fmt)
        write_atomic(path, data.encode() if isinstance(data, str) else data, force=args.force)


def wants_statement(args: argparse.Namespace, period: Period) -> bool:
    return any(fmt == "html" for _, fmt in outputs(args, period)) or args.format == "html"


def render_file(
    fmt: str,
    info: ReportInfo,
    columns: Sequence[str],
    rows: Sequence[dict[str, Any]],
    statement: Callable[[], Statement],
) -> str | bytes:
    """The rows in ``fmt``; ``statement`` gives the HTML statement's sessions, per-charger rows and labels."""
    if fmt == "xlsx":
        from exporter.report.xlsx import render_xlsx

        return render_xlsx(info, columns, rows)
    if fmt == "html":
        from exporter.report.statement import render_statement

        sessions, chargers, labels = statement()
        return render_statement(info, sessions, chargers, labels)
    return render(rows, columns, fmt)


__all__ = ["OutputError", "PriceSeriesError", "Pricing", "add_arguments", "check_args", "emit", "pricing_from_args"]
