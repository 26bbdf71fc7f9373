"""Report periods: --start/--end, --month, --year, in an IANA zone, as half-open Unix-time intervals [start, end).

A month or a year is a whole period of the zone's civil calendar: its bounds are local midnights, so a month in
Europe/Berlin that contains a daylight-saving change is 743 or 745 hours long, never 744 cut at the wrong hour.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MONTH = re.compile(r"^(\d{4})-(\d{2})$")
YEAR = re.compile(r"^(\d{4})$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
ETC = Path("/etc")


class UsageError(ValueError):
    """Bad input on the command line: the report exits 2 with this message."""


@dataclass(frozen=True, slots=True)
class Period:
    start: float  # Unix seconds, inclusive
    end: float  # Unix seconds, exclusive
    zone: tzinfo
    label: str  # how the period is named in notes: "2026-03", "2026", or the two bounds


def zone(name: str | None, environ: Mapping[str, str] | None = None, etc: Path = ETC) -> tzinfo:
    """The IANA zone by name; without one the machine's, with its daylight-saving rules: ``TZ``, else
    /etc/localtime (a link into the zone database, or a copy named in /etc/timezone). None found: a usage error
    that asks for --tz (a fixed offset would bound March an hour off when run in December)."""
    if name is None:
        found = machine_zone(os.environ if environ is None else environ, etc)
        if found is None:
            raise UsageError(
                "cannot tell this machine's time zone (no TZ, no /etc/localtime link or /etc/timezone): "
                "give --tz ZONE, such as --tz Europe/Berlin or --tz UTC"
            )
        return found
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"--tz: unknown time zone {name!r} (an IANA name such as Europe/Berlin or UTC)") from None


def machine_zone(environ: Mapping[str, str], etc: Path) -> ZoneInfo | None:
    candidates: list[str] = []
    tz = environ.get("TZ", "").strip().removeprefix(":")
    if tz:
        candidates.append(tz.split("zoneinfo/", 1)[-1])
    localtime = etc / "localtime"
    if localtime.is_symlink():
        target = os.readlink(localtime)
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[-1])
    with contextlib.suppress(OSError):
        candidates.append((etc / "timezone").read_text(encoding="utf-8").strip())
    for candidate in candidates:
        with contextlib.suppress(ZoneInfoNotFoundError, ValueError):
            if candidate:
                return ZoneInfo(candidate)
    return None


def local_midnight(day: date, tz: tzinfo) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()


def parse_instant(text: str, tz: tzinfo, flag: str) -> float:
    """RFC 3339 (with offset or Z) or a date, which means that day's local midnight in the zone."""
    value = text.strip()
    if DATE.match(value):
        try:
            return local_midnight(date.fromisoformat(value), tz)
        except ValueError:
            raise UsageError(f"{flag}: {text!r} is not a valid date") from None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{flag}: {text!r} is neither an RFC 3339 time (2026-03-01T00:00:00+01:00) nor a date"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.timestamp()


def month_period(text: str, tz: tzinfo) -> Period:
    m = MONTH.match(text.strip())
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise UsageError(f"--month: expected YYYY-MM, last or this, got {text!r}")
    year, month = int(m.group(1)), int(m.group(2))
    first = date(year, month, 1)
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    return Period(local_midnight(first, tz), local_midnight(nxt, tz), tz, f"{year:04d}-{month:02d}")


def year_period(text: str, tz: tzinfo) -> Period:
    m = YEAR.match(text.strip())
    if not m or int(m.group(1)) < 1970:
        raise UsageError(f"--year: expected YYYY, last or this, got {text!r}")
    year = int(m.group(1))
    return Period(local_midnight(date(year, 1, 1), tz), local_midnight(date(year + 1, 1, 1), tz), tz, f"{year:04d}")


def period_from_args(
    start: str | None,
    end: str | None,
    month: str | None,
    year: str | None,
    tz_name: str | None,
    *,
    now: float | None = None,
) -> Period:
    tz = zone(tz_name)
    month, year = relative(month, year, tz, now)
    given = [name for name, v in (("--start/--end", start or end), ("--month", month), ("--year", year)) if v]
    if len(given) != 1:
        raise UsageError(
            "give the period as exactly one of --start T --end T, --month YYYY-MM|last|this or --year YYYY|last|this"
        )
    if month:
        return month_period(month, tz)
    if year:
        return year_period(year, tz)
    if not start or not end:
        raise UsageError("--start and --end go together (end exclusive)")
    a, b = parse_instant(start, tz, "--start"), parse_instant(end, tz, "--end")
    if b <= a:
        raise UsageError(f"--end ({end}) must be after --start ({start})")
    return Period(a, b, tz, f"{start} .. {end}")


def relative(month: str | None, year: str | None, tz: tzinfo, now: float | None) -> tuple[str | None, str | None]:
    """``--month last|this`` and ``--year last|this`` as YYYY-MM and YYYY, in the zone: a job that runs at 00:30 on
    the 1st in Berlin reports the month that just ended there, whatever the machine's clock zone."""
    today = datetime.fromtimestamp(time.time() if now is None else now, tz=tz).date()
    if month in ("last", "this"):
        first = today.replace(day=1) if month == "this" else (today.replace(day=1) - timedelta(days=1)).replace(day=1)
        month = f"{first.year:04d}-{first.month:02d}"
    if year in ("last", "this"):
        year = f"{today.year - (year == 'last'):04d}"
    return month, year


def rfc3339(t: float, tz: tzinfo) -> str:
    """Seconds resolution with the zone's offset at that instant (+01:00 in winter, +02:00 in summer)."""
    return datetime.fromtimestamp(round(t), tz=tz).isoformat(timespec="seconds")
