"""Which asyncio event loop the exporter (and ``simulate``) runs on.

uvloop where it is installed: aiohttp's documentation recommends it, and it takes about a fifth off the exporter's
CPU per scrape (docs/benchmark/). The standard loop where uvloop is not installed (it is a dependency only where it
builds: CPython on Linux and macOS), or when asked for with ``--event-loop asyncio`` or
``PULSATRIX_EVENT_LOOP=asyncio`` (to rule the loop out when chasing a problem). The choice is logged at start and is
the ``event_loop`` label of ``pulsatrix_exporter_build_info``.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import platform
from collections.abc import Callable
from dataclasses import dataclass

ENV = "PULSATRIX_EVENT_LOOP"
CHOICES = ("auto", "uvloop", "asyncio")


class EventLoopError(Exception):
    """The loop asked for cannot be had (its message is for the user)."""


@dataclass(frozen=True, slots=True)
class EventLoop:
    name: str  # "uvloop" or "asyncio"
    version: str
    new_loop: Callable[[], asyncio.AbstractEventLoop]
    why: str = ""  # why this one, when it is not the default's first choice

    def describe(self) -> str:
        return f"{self.name} {self.version}" + (f" ({self.why})" if self.why else "")


def choose(requested: str = "auto") -> EventLoop:
    """The loop for ``requested`` (one of :data:`CHOICES`); :class:`EventLoopError` when it cannot be had."""
    if requested not in CHOICES:
        raise EventLoopError(f"unknown event loop {requested!r}: choose one of {', '.join(CHOICES)}")
    standard = EventLoop("asyncio", platform.python_version(), asyncio.new_event_loop)
    if requested == "asyncio":
        return EventLoop(standard.name, standard.version, standard.new_loop, "as asked")
    try:
        import uvloop
    except ImportError:
        if requested == "uvloop":
            raise EventLoopError("uvloop is not installed here; install it or use --event-loop asyncio") from None
        return EventLoop(standard.name, standard.version, standard.new_loop, "uvloop is not installed")
    return EventLoop("uvloop", importlib.metadata.version("uvloop"), uvloop.new_event_loop)
