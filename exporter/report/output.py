"""Rows out as CSV (a header row, then one row per session or group), JSON (numbers as numbers) or a table."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

Row = dict[str, Any]
MONEY_MARK = "\u0000money:"
MONEY = re.compile(r'"\\u0000money:(-?[0-9]+\.[0-9]{2,4})"')  # cents, and avg_price's four decimals


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.3f}" if value != int(value) or abs(value) < 1e15 else f"{value:.0f}"
    if isinstance(value, tuple | list):
        return " ".join(str(v) for v in value)
    return str(value)


def render(rows: Sequence[Row], columns: Sequence[str], fmt: str) -> str:
    if fmt == "json":
        # one row per line, each encoded by json's C encoder (indent= would take the pure-Python one: 10x slower
        # for a year's 350,000 sessions); no call per value (tuples are lists already, money goes through the
        # encoder's default hook), and a row holding NaN or infinity encoded again with them made null
        if not rows:
            return "[]\n"
        encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=_json).encode
        lines = (_money(_encode(encode, {c: row.get(c) for c in columns})) for row in rows)
        return "[\n" + ",\n".join(lines) + "\n]\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_text(row.get(c)) for c in columns])
        return buf.getvalue()
    return table(rows, columns)


def _encode(encode: Callable[[Any], str], row: Row) -> str:
    try:
        return encode(row)
    except ValueError:  # NaN or infinity (allow_nan=False)
        return encode({c: _finite(v) for c, v in row.items()})


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity (a server's "NaN" sample): null, as for a missing value."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, tuple | list):
        return [_finite(v) for v in value]
    return value


def _json(value: Any) -> Any:
    """What json cannot encode: money, written as a number with its two decimals (see _money)."""
    if isinstance(value, Decimal):
        return f"{MONEY_MARK}{value}"
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _money(line: str) -> str:
    """Money as a JSON number with two decimals (1.10, not 1.1): json has no number type that keeps them."""
    return MONEY.sub(r"\1", line) if "\\u0000money:" in line else line


def table(rows: Sequence[Row], columns: Sequence[str]) -> str:
    """Aligned columns for a terminal: numbers to the right, text to the left, a rule under the header."""
    cells = [[_text(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    numeric = [all(_is_number(row.get(c)) for row in rows) and bool(rows) for c in columns]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    out = [line(columns), "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in cells)
    return "\n".join(out) + "\n"


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, int | float | Decimal) and not isinstance(value, bool))
