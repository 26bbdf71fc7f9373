"""``--format xlsx``: the rows as a spreadsheet that opens correctly in any locale.

Numbers are numbers and formats are number formats, which a spreadsheet shows with the reader's own decimal
separator (a German Excel shows 11,000 for eleven, never eleven thousand): kWh to three decimals, money to two with
the currency, times as spreadsheet date-times in the report's zone (named in their column's header: a spreadsheet
date has no zone). A frozen bold header, a totals row, and a second sheet with the report's parameters and its
flags in words.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import xlsxwriter
from xlsxwriter.utility import xl_col_to_name

from exporter.report.outfile import ReportInfo

TIME_COLUMNS = ("start", "end", "period_start", "period_end", "meter_start_time", "meter_end_time", "last_seen")
SUMMED = ("energy_kwh", "cost", "sessions", "chargers")
DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"


def is_time(column: str) -> bool:
    return column in TIME_COLUMNS or column.endswith("_time")


def local_datetime(value: Any) -> datetime | None:
    """An RFC 3339 row value as the naive local date-time a spreadsheet holds (the zone is in the header)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=None)
    except ValueError:
        return None


def header(column: str, info: ReportInfo) -> str:
    if is_time(column):
        return f"{column} ({info.zone_name})"
    if column == "cost" and info.currency:
        return f"cost ({info.currency})"
    if column == "avg_price" and info.currency:
        return f"avg_price ({info.currency}/kWh)"
    return column


def render_xlsx(info: ReportInfo, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> bytes:
    buf = io.BytesIO()
    book = xlsxwriter.Workbook(buf, {"in_memory": True, "strings_to_numbers": False, "strings_to_formulas": False})
    book.set_properties({"title": f"pulsatrix {info.view} {info.period}", "comments": f"read from {info.server}"})
    currency = info.currency or ""
    formats = {
        "head": book.add_format({"bold": True, "bottom": 1, "text_wrap": True, "valign": "top"}),
        "kwh": book.add_format({"num_format": "0.000"}),
        "money": book.add_format({"num_format": f'#,##0.00 "{currency}"' if currency else "#,##0.00"}),
        "price": book.add_format({"num_format": f'0.0000 "{currency}/kWh"' if currency else "0.0000"}),
        "int": book.add_format({"num_format": "0"}),
        "time": book.add_format({"num_format": DATETIME_FORMAT}),
        "total": book.add_format({"bold": True, "top": 1}),
    }
    for name, num in (("kwh", "0.000"), ("money", formats["money"].num_format), ("int", "0")):
        formats[f"total_{name}"] = book.add_format({"bold": True, "top": 1, "num_format": num})
    formats["total_count"] = book.add_format({"bold": True, "top": 1, "num_format": '0 "sessions"'})
    sheet = book.add_worksheet(info.view)
    for c, column in enumerate(columns):
        sheet.write_string(0, c, header(column, info), formats["head"])
        sheet.set_column(c, c, _width(column))
    for r, row in enumerate(rows, start=1):
        for c, column in enumerate(columns):
            _cell(sheet, r, c, column, row.get(column), formats)
    _totals(sheet, columns, rows, formats)
    sheet.freeze_panes(1, 0)
    sheet.autofilter(0, 0, max(len(rows), 1), len(columns) - 1)
    sheet.set_landscape()
    sheet.set_paper(9)  # A4
    sheet.fit_to_pages(1, 0)
    sheet.repeat_rows(0)
    _parameters(book, info, formats)
    book.close()
    return buf.getvalue()


def _width(column: str) -> float:
    if is_time(column):
        return 20
    return max(10, min(40, len(column) + 4))


def _cell(sheet: Any, r: int, c: int, column: str, value: Any, formats: dict[str, Any]) -> None:
    if value is None or value == "":
        sheet.write_blank(r, c, None)
        return
    if is_time(column):
        when = local_datetime(value)
        if when is not None:
            sheet.write_datetime(r, c, when, formats["time"])
            return
    if isinstance(value, bool):
        sheet.write_boolean(r, c, value)
    elif isinstance(value, int | float | Decimal):
        fmt = (
            formats["kwh"]
            if column.endswith("_kwh")
            else formats["money"]
            if column == "cost"
            else formats["price"]
            if column == "avg_price"
            else formats["int"]
            if isinstance(value, int)
            else None
        )
        sheet.write_number(r, c, float(value), fmt)
    elif isinstance(value, tuple | list):
        sheet.write_string(r, c, " ".join(str(v) for v in value))
    else:
        sheet.write_string(r, c, str(value))


def _totals(sheet: Any, columns: Sequence[str], rows: Sequence[dict[str, Any]], formats: dict[str, Any]) -> None:
    r = len(rows) + 1
    last = len(rows) + 1  # the rows are 2..last in the spreadsheet's numbering
    for c in range(len(columns)):
        sheet.write_blank(r, c, None, formats["total"])
    sheet.write_string(r, 0, "Total", formats["total"])
    for c, column in enumerate(columns):
        col = xl_col_to_name(c)
        if column in SUMMED:
            values = [row.get(column) for row in rows]
            total = sum(float(v) for v in values if isinstance(v, int | float | Decimal) and not isinstance(v, bool))
            kind = "kwh" if column == "energy_kwh" else "money" if column == "cost" else "int"
            sheet.write_formula(r, c, f"=SUM({col}2:{col}{last})", formats[f"total_{kind}"], round(total, 6))
        elif column == "start" and "sessions" not in columns:
            sheet.write_formula(r, c, f"=COUNTA({col}2:{col}{last})", formats["total_count"], len(rows))


def _parameters(book: Any, info: ReportInfo, formats: dict[str, Any]) -> None:
    sheet = book.add_worksheet("report")
    sheet.set_column(0, 0, 18)
    sheet.set_column(1, 1, 90)
    lines: list[tuple[str, Any]] = [
        ("report", info.view),
        ("period", info.period),
        (f"from ({info.zone_name})", info.local(info.start)),
        (f"to, exclusive ({info.zone_name})", info.local(info.end)),
        ("time zone", f"{info.zone_name}: every date-time in this file is local time there"),
        ("server", info.server),
        ("source", info.source),
        ("matchers", " ".join(info.matchers) or "(all chargers)"),
        ("pricing", info.pricing),
        ("currency", info.currency or ""),
        (f"generated ({info.zone_name})", info.local(info.generated)),
    ]
    sheet.write_string(0, 0, "parameter", formats["head"])
    sheet.write_string(0, 1, "value", formats["head"])
    r = 1
    for name, value in lines:
        sheet.write_string(r, 0, name)
        if isinstance(value, datetime):
            sheet.write_datetime(r, 1, value.replace(tzinfo=None), formats["time"])
        else:
            sheet.write_string(r, 1, str(value))
        r += 1
    r += 1
    sheet.write_string(r, 0, "flag", formats["head"])
    sheet.write_string(r, 1, "meaning", formats["head"])
    for flag, text in info.flag_lines() or [("(none)", "no row carries a flag")]:
        r += 1
        sheet.write_string(r, 0, flag)
        sheet.write_string(r, 1, text)
    sheet.freeze_panes(1, 0)
