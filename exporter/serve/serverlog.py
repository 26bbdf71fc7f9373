"""What aiohttp's server logs about requests it cannot parse: one line, never the request's bytes.

Installed by the command line when it sets up logging (:func:`hide_malformed_requests`). Imports aiohttp only
when aiohttp is logging, so that ``--check-config`` does not load it.
"""

from __future__ import annotations

import logging
import math
import time


class MalformedRequestFilter(logging.Filter):
    """aiohttp logs a request it cannot parse with a traceback quoting the offending line: for an over-long
    ``Authorization`` header that is ``Basic <base64 of user:password>``, at ERROR level. Keep one line that
    says what was wrong and from where, never the request's bytes; and at most one such line per
    :attr:`INTERVAL`: anyone who reaches the port can send thousands of bad requests a second, and journald drops
    a service's lines past 10,000 per 30 s, the real messages with them. The ones not logged are counted, and the
    count is in the next line logged."""

    INTERVAL = 60.0

    def __init__(self) -> None:
        super().__init__()
        self.clock = time.monotonic
        self._logged_at = -math.inf
        self._not_logged = 0

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError  # imported by then: aiohttp is logging

        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        now = self.clock()
        if now - self._logged_at < self.INTERVAL:
            self._not_logged += 1
            return False
        try:
            where = record.getMessage()
        except (TypeError, ValueError):  # a filter that raises would break the request, not only the log
            where = "Error handling request"
        record.msg = "%s: malformed HTTP request refused with %d (%s; its content is not logged)"
        record.args = (where, exc.code, type(exc).__name__)
        if self._not_logged:
            record.msg += "; %d more malformed requests in the %d s since the last such line, not logged one by one"
            record.args = (*record.args, self._not_logged, round(now - self._logged_at))
        self._logged_at, self._not_logged = now, 0
        record.exc_info, record.exc_text = None, None
        return True


def hide_malformed_requests() -> None:
    """Install the filter on aiohttp's server logger (once)."""
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequestFilter) for f in logger.filters):
        logger.addFilter(MalformedRequestFilter())
