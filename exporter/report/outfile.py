"""``--output FILE``: what every file format shares — the report's parameters, the flags in words, and the atomic
write that never leaves a half-written file and never overwrites one without ``--force``.

A file is written beside its target under a temporary name, flushed to disk, and renamed into place: a reader (a
monthly job's mail step, a file share) sees the old file or the complete new one, never a part. Without
``--force`` the rename is a link that fails when the target exists, so two jobs racing cannot overwrite each other
either.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path

# Every flag a row can carry, in words (the spreadsheet's second sheet and the statement say them).
FLAG_TEXT = {
    "meter_reset": "the meter was replaced or reset: the energy across the change is left out, never guessed",
    "incomplete": "a session's end was never scraped: its end and energy are unknown",
    "unpriced": "the price, or the meter at a price change, is unknown for part of the row: no cost is given",
    "device_clock": "the charger's own session times were implausible: the session is placed at the scrapes that "
    "saw it begin and end",
    "no_data_at_start": "the server holds no meter reading before the period's start: the figures begin at the "
    "first reading it holds",
    "no_data_at_end": "no meter reading at the period's end: the figures end at the last reading the server holds",
    "period_open": "the period is not over yet: the figures are up to now",
}


class OutputError(ValueError):
    """The output file cannot be written: one line, exit 2 (usage) or 1 (the disk)."""


@dataclass(frozen=True, slots=True)
class ReportInfo:
    """What a file says about how it was made (the spreadsheet's second sheet, the statement's header)."""

    view: str  # "sessions" or "summary"
    period: str  # "2026-03", "2026", or the two bounds
    start: float
    end: float
    zone: tzinfo
    zone_name: str
    server: str
    source: str  # "rules" or "raw"
    pricing: str  # "none", "price 0.32 EUR/kWh", "tariff ...", "price series ..."
    currency: str | None
    generated: float
    matchers: tuple[str, ...] = ()
    flags: tuple[str, ...] = field(default=())  # the flags that occur in the rows

    def local(self, t: float) -> datetime:
        return datetime.fromtimestamp(t, tz=self.zone)

    def flag_lines(self) -> list[tuple[str, str]]:
        return [(f, FLAG_TEXT.get(f, "see README, Energy reports")) for f in self.flags]


def check_target(path: str, force: bool) -> Path:
    """Refuse early (before any query) what the write would refuse at the end."""
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"--output: {path!r} is a directory")
    if target.exists() and not force:
        raise OutputError(f"--output: {path!r} exists; pass --force to replace it")
    if not target.parent.is_dir():
        raise OutputError(f"--output: the directory of {path!r} does not exist")
    return target


def write_atomic(path: str, data: bytes, *, force: bool) -> None:
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide the report from the group that reads it
        if force:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)  # fails if the target appeared meanwhile: never overwrites without --force
            except FileExistsError:
                raise OutputError(f"--output: {path!r} exists; pass --force to replace it") from None
            os.unlink(tmp)
    except OSError as exc:
        raise OutputError(f"--output: cannot write {path!r} ({exc.strerror or exc})") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _sync_dir(target.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _sync_dir(directory: Path) -> None:
    """The rename is durable once the directory is on disk too (ext4 and XFS; a no-op where it cannot be)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
