"""``--tariff FILE``: a time-of-use tariff read from YAML, and the price it sets at every moment.

The file (docs/energy-reports.md, "Energy reports")::

    currency: EUR
    tariffs:                      # each holds from its local date (in --tz) until the next one's
      - from: "2026-01-01"
        price: 0.32               # per kWh outside the windows
        windows:                  # local times; a window may wrap past midnight; "24:00" is allowed as an end
          - name: night
            days: [mon, tue, wed, thu, fri, sat, sun]   # optional: every day; the day a window starts
            start: "22:00"
            end: "06:00"
            price: 0.24

The price at a moment is a function of that moment's local date and time alone: the tariff whose ``from`` is the
latest on or before the local date, then the window that covers the local time (a window that wraps past midnight
covers the evening of a listed day and the morning after it). So a 22:00 window starts at 22:00 local on both sides
of a daylight-saving change, and a tariff change at ``from`` takes over at that local midnight, also in the middle of
the previous tariff's night window.

The reader is this layer's own (exporter/report/ may not import exporter/config/): it reports every problem at
once, each naming the file, the key path and what is wrong, the way the exporter's config errors do.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1 << 20  # a tariff file is a few hundred bytes; a megabyte is not a tariff
MAX_TARIFFS = 1_000
MAX_WINDOWS = 100
MAX_PRICE = 100.0  # per kWh: a typo such as 3200 instead of 0.32 is refused rather than billed
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TIME = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")
CURRENCY = re.compile(r"^[A-Z]{3}$")
MINUTES_A_DAY = 1440
MAX_PROBLEMS = 100  # as the exporter's config errors show


class TariffError(ValueError):
    """A tariff file that cannot be used: every problem, one line each (the report exits 2 with it)."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source, self.problems = source, list(problems)
        if len(self.problems) == 1:
            text = f"{source}: {self.problems[0]}"
        else:
            many = self.problems[-1].startswith("... and more")
            count = f"more than {MAX_PROBLEMS}" if many else str(len(self.problems))
            lines = [f"{source}: {count} problems in tariff", *(f"  {source}: {p}" for p in self.problems)]
            text = "\n".join(lines)
        super().__init__(text)


@dataclass(frozen=True, slots=True)
class Window:
    name: str
    days: frozenset[int]  # 0 = Monday: the days the window starts on
    start: int  # minute of the day, 0..1439
    end: int  # minute of the day, 1..1440; end <= start: the window wraps past midnight
    price: float

    @property
    def wraps(self) -> bool:
        return self.end <= self.start

    def covers(self, weekday: int, minute: int) -> bool:
        """Whether the window holds at ``minute`` of a day that is ``weekday``."""
        if not self.wraps:
            return weekday in self.days and self.start <= minute < self.end
        if minute >= self.start:
            return weekday in self.days
        return minute < self.end and (weekday - 1) % 7 in self.days


@dataclass(frozen=True, slots=True)
class Tariff:
    start: date  # holds from this local date on
    price: float  # outside the windows
    windows: tuple[Window, ...] = ()

    def price_at(self, weekday: int, minute: int) -> float:
        for window in self.windows:
            if window.covers(weekday, minute):
                return window.price
        return self.price

    def describe(self) -> str:
        parts = [f"from {self.start.isoformat()}: {self.price:g}"]
        for w in self.windows:
            days = "" if len(w.days) == 7 else " " + ",".join(DAYS[d] for d in sorted(w.days))
            parts.append(f"{w.name} {_hhmm(w.start)}-{_hhmm(w.end)}{days}: {w.price:g}")
        return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class TariffFile:
    source: str
    currency: str | None
    tariffs: tuple[Tariff, ...]

    def describe(self) -> str:
        return " | ".join(t.describe() for t in self.tariffs)


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


# -- reading ---------------------------------------------------------------------------------------------------------


class _TooMany(Exception):
    """More problems than a person reads: the file is not a tariff (or an alias multiplies one mapping)."""


class _Reader:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}" if path else message)
        if len(self.problems) >= MAX_PROBLEMS:
            self.problems.append("... and more: stopped after the first 100 problems")
            raise _TooMany

    def keys(self, path: str, obj: Mapping[Any, Any], allowed: Sequence[str], required: Sequence[str]) -> None:
        for key in obj:
            if key not in allowed:
                near = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else f" (expected {', '.join(allowed)})"
                self.error(_join(path, str(key)), f"unknown key{hint}")
        for key in required:
            if key not in obj:
                self.error(_join(path, key), "missing")

    def mapping(self, path: str, value: Any) -> Mapping[Any, Any] | None:
        if isinstance(value, Mapping):
            return value
        self.error(path, f"expected a mapping, got {_describe(value)}")
        return None

    def price(self, path: str, value: Any) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(path, f"expected a price per kWh (a number such as 0.32), got {_describe(value)}")
            return None
        if not math.isfinite(value) or not 0 <= value <= MAX_PRICE:
            self.error(path, f"expected a price per kWh from 0 to {MAX_PRICE:g}, got {value!r}")
            return None
        return float(value)

    def day(self, path: str, value: Any) -> date | None:
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        self.error(path, f'expected a date "YYYY-MM-DD", got {_describe(value)}')
        return None

    def time(self, path: str, value: Any, *, end: bool) -> int | None:
        if isinstance(value, int) and not isinstance(value, bool):
            # YAML 1.1 reads 22:00 unquoted as a base-60 number (1320)
            self.error(path, f'expected a time "HH:MM" in quotes; YAML read it as the number {value}')
            return None
        m = TIME.match(value) if isinstance(value, str) else None
        minute = int(m.group(1)) * 60 + int(m.group(2)) if m else None
        if minute is None or minute > MINUTES_A_DAY or (minute == MINUTES_A_DAY and not end):
            allowed = '"00:00" to "24:00"' if end else '"00:00" to "23:59"'
            self.error(path, f"expected a time {allowed}, got {_describe(value)}")
            return None
        return minute


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:40] + "…"
        return f"a string ({shown!r})"
    return f"{type(value).__name__} ({str(value)[:40]})"


def load_tariff(path: str) -> TariffFile:
    """The tariff in ``path``; :class:`TariffError` names every problem (an unreadable file in one line)."""
    try:
        with Path(path).open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise TariffError(path, [f"cannot read the tariff file ({exc.strerror or exc})"]) from None
    if len(raw) > MAX_BYTES:
        raise TariffError(path, [f"larger than {MAX_BYTES // 1024} KiB: not a tariff file"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise TariffError(path, ["not UTF-8 text"]) from None
    return parse_tariff(text, path)


def parse_tariff(text: str, source: str = "tariff") -> TariffFile:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise TariffError(source, [f"{where}{problem}"]) from None
    r = _Reader()
    try:
        return _read(r, doc, source)
    except _TooMany:
        raise TariffError(source, r.problems) from None


def _read(r: _Reader, doc: Any, source: str) -> TariffFile:
    top = r.mapping("", doc) if doc is not None else None
    if doc is None:
        r.error("", "empty: expected a mapping with currency and tariffs")
    if top is None:
        raise TariffError(source, r.problems)
    r.keys("", top, ("currency", "tariffs"), ("tariffs",))
    currency = top.get("currency")
    if currency is not None and not (isinstance(currency, str) and CURRENCY.match(currency)):
        r.error("currency", f"expected a three-letter code such as EUR, got {_describe(currency)}")
        currency = None
    tariffs: list[Tariff] = []
    items = top.get("tariffs")
    if "tariffs" in top:
        if not isinstance(items, list) or not items:
            r.error("tariffs", f"expected a list of at least one tariff, got {_describe(items)}")
        elif len(items) > MAX_TARIFFS:
            r.error("tariffs", f"at most {MAX_TARIFFS} tariffs, got {len(items)}")
        else:
            tariffs = _tariffs(r, items)
    if r.problems:
        raise TariffError(source, r.problems)
    return TariffFile(source, currency, tuple(tariffs))


def _tariffs(r: _Reader, items: list[Any]) -> list[Tariff]:
    out: list[Tariff] = []
    previous: date | None = None
    for i, item in enumerate(items):
        path = f"tariffs[{i}]"
        obj = r.mapping(path, item)
        if obj is None:
            continue
        r.keys(path, obj, ("from", "price", "windows"), ("from", "price"))
        start = r.day(f"{path}.from", obj["from"]) if "from" in obj else None
        price = r.price(f"{path}.price", obj["price"]) if "price" in obj else None
        windows = _windows(r, path, obj.get("windows", []))
        if start is not None and previous is not None and start <= previous:
            r.error(f"{path}.from", f"{start.isoformat()} is not after the tariff before it ({previous.isoformat()})")
        previous = start if start is not None else previous
        if start is not None and price is not None and windows is not None:
            out.append(Tariff(start, price, windows))
    return out


def _windows(r: _Reader, path: str, items: Any) -> tuple[Window, ...] | None:
    if not isinstance(items, list):
        r.error(f"{path}.windows", f"expected a list of windows, got {_describe(items)}")
        return None
    if len(items) > MAX_WINDOWS:
        r.error(f"{path}.windows", f"at most {MAX_WINDOWS} windows, got {len(items)}")
        return None
    out: list[Window] = []
    failed = False
    for j, item in enumerate(items):
        wpath = f"{path}.windows[{j}]"
        obj = r.mapping(wpath, item)
        if obj is None:
            failed = True
            continue
        r.keys(wpath, obj, ("name", "days", "start", "end", "price"), ("start", "end", "price"))
        name = obj.get("name", f"window {j + 1}")
        if not isinstance(name, str) or not name.strip() or len(name) > 40:
            r.error(f"{wpath}.name", f"expected a name of 1 to 40 characters, got {_describe(name)}")
            name = None
        days = _days(r, f"{wpath}.days", obj.get("days", list(DAYS)))
        start = r.time(f"{wpath}.start", obj["start"], end=False) if "start" in obj else None
        end = r.time(f"{wpath}.end", obj["end"], end=True) if "end" in obj else None
        price = r.price(f"{wpath}.price", obj["price"]) if "price" in obj else None
        if start is not None and end is not None and start == end:
            whole = '"00:00" to "24:00" is the whole day'
            r.error(wpath, f"starts and ends at {_hhmm(start)}: a window needs a length ({whole})")
            end = None
        if name is None or days is None or start is None or end is None or price is None:
            failed = True
            continue
        window = Window(name, days, start, end, price)
        for other in out:
            clash = _overlap(window, other)
            if clash is not None:
                r.error(wpath, f"overlaps {other.name!r} on {clash}: which price would hold is unclear")
        out.append(window)
    return None if failed else tuple(out)


def _days(r: _Reader, path: str, value: Any) -> frozenset[int] | None:
    if not isinstance(value, list) or not value:
        r.error(path, f"expected a list of days such as [mon, tue], got {_describe(value)}")
        return None
    out: set[int] = set()
    for k, day in enumerate(value):
        name = day.lower() if isinstance(day, str) else None
        if name not in DAYS:
            r.error(f"{path}[{k}]", f"expected one of {', '.join(DAYS)}, got {_describe(day)}")
            return None
        if DAYS.index(name) in out:
            r.error(f"{path}[{k}]", f"{name} is listed twice")
            return None
        out.add(DAYS.index(name))
    return frozenset(out)


def _overlap(a: Window, b: Window) -> str | None:
    """The first weekday and time at which both windows hold, if any (e.g. 'tue 05:00')."""
    for x0, x1 in _week_spans(a):
        for y0, y1 in _week_spans(b):
            lo = max(x0, y0)
            if lo < min(x1, y1):
                return f"{DAYS[lo // MINUTES_A_DAY]} {_hhmm(lo % MINUTES_A_DAY)}"
    return None


def _week_spans(w: Window) -> list[tuple[int, int]]:
    """The minutes of the week (Monday 00:00 = 0) the window covers, as [a, b) spans; Sunday night's wrap is
    folded back onto Monday morning."""
    week = 7 * MINUTES_A_DAY
    out = []
    for d in w.days:
        a = d * MINUTES_A_DAY + w.start
        b = d * MINUTES_A_DAY + w.end + (MINUTES_A_DAY if w.wraps else 0)
        if b > week:
            out += [(a, week), (0, b - week)]
        else:
            out.append((a, b))
    return sorted(out)


# -- prices over time ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TariffSchedule:
    """A tariff file in a zone: the price at every moment, and where it changes."""

    tariff: TariffFile
    zone: tzinfo

    def _tariff_on(self, day: date) -> Tariff | None:
        found = None
        for t in self.tariff.tariffs:
            if t.start <= day:
                found = t
        return found

    def price_at(self, t: float) -> float | None:
        """The price in force at ``t`` (Unix seconds); None before the first tariff's ``from``."""
        local = datetime.fromtimestamp(t, tz=self.zone)
        tariff = self._tariff_on(local.date())
        if tariff is None:
            return None
        return tariff.price_at(local.weekday(), local.hour * 60 + local.minute)

    def changes(self, start: float, end: float) -> list[tuple[float, float | None]]:
        """``[(start, price), (t1, price1), ...]``: each price holds from its time until the next one's (the last
        until ``end``); only the moments in (start, end) where the price actually changes are listed."""
        out: list[tuple[float, float | None]] = [(start, self.price_at(start))]
        for t in self._boundaries(start, end):
            price = self.price_at(t)
            if price != out[-1][1]:
                out.append((t, price))
        return out

    def _boundaries(self, start: float, end: float) -> list[float]:
        """Every moment in (start, end) where the price may change: each local day's midnight and its windows' starts
        and ends (both readings of an hour that occurs twice), and each change of the zone's UTC offset."""
        first = datetime.fromtimestamp(start, tz=self.zone).date() - timedelta(days=1)
        last = datetime.fromtimestamp(end, tz=self.zone).date() + timedelta(days=1)
        moments: set[float] = set()
        day = first
        while day <= last:
            tariff = self._tariff_on(day)
            minutes = {0} | ({m % MINUTES_A_DAY for w in tariff.windows for m in (w.start, w.end)} if tariff else set())
            for minute in minutes:
                for fold in (0, 1):
                    hour, m = divmod(minute, 60)
                    local = datetime(day.year, day.month, day.day, hour, m, tzinfo=self.zone, fold=fold)
                    moments.add(local.timestamp())
            moments.update(_offset_changes(day, self.zone))
            day += timedelta(days=1)
        return sorted(m for m in moments if start < m < end)


def _offset_changes(day: date, zone: tzinfo) -> list[float]:
    """The instants in this local day where the zone's UTC offset changes (a daylight-saving switch)."""
    a = datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()
    b = a + 26 * 3600.0

    def offset(t: float) -> timedelta | None:
        return datetime.fromtimestamp(t, tz=zone).utcoffset()

    if offset(a) == offset(b):
        return []
    lo, hi = a, b
    while hi - lo > 1:  # the switch is on a whole second; bisect to it
        mid = math.floor((lo + hi) / 2)
        if offset(mid) == offset(lo):
            lo = mid
        else:
            hi = mid
    return [hi]
