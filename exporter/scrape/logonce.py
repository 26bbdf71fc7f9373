"""Log an unexpected error (an exporter bug) with its traceback once per charger and kind of error, not on every
poll or scrape: a bug that hits every scrape of 1,000 chargers would otherwise write 1,000 tracebacks each time.

Used by :mod:`exporter.scrape.fetch` (one endpoint's request), :mod:`exporter.scrape.poll` (a whole poll) and
:mod:`exporter.scrape.health` (building a charger's metrics); the error is still counted, as ``exporter_error``, every
time.
"""

from __future__ import annotations

import logging


class OncePerKind:
    """The (charger, exception type) pairs already logged with a traceback, and the logger they go to."""

    __slots__ = ("_log", "_seen")

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._seen: set[tuple[str, str]] = set()

    def error(self, charger: str, exc: BaseException, msg: str, *args: object) -> None:
        """``log.error(msg, *args)`` with the traceback of ``exc``, unless this charger logged that kind already."""
        key = (charger, type(exc).__name__)
        if key in self._seen:
            return
        self._seen.add(key)
        self._log.error(msg, *args, exc_info=exc)

    def forget(self, charger: str) -> None:
        """A charger removed by a reload: if it comes back, its errors are logged again."""
        self._seen = {key for key in self._seen if key[0] != charger}
