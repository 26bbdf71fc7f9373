"""exporter.eventloop: uvloop where it is installed, the standard loop where not or when asked, and a clear error for
a loop that cannot be had. The suite itself runs on the loop the exporter uses by default (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import platform
import sys

import pytest

from exporter.eventloop import EventLoopError, choose
from exporter.scrape.families import build_info_families, event_loop_name


def test_auto_takes_uvloop_where_it_is_installed() -> None:
    pytest.importorskip("uvloop", reason="uvloop is a dependency on this platform")
    loop = choose("auto")
    assert loop.name == "uvloop" and loop.why == ""
    made = loop.new_loop()
    try:
        assert type(made).__module__.startswith("uvloop")
    finally:
        made.close()


def test_asyncio_when_asked_and_when_uvloop_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = choose("asyncio")
    assert (asked.name, asked.version, asked.describe()) == (
        "asyncio",
        platform.python_version(),
        f"asyncio {platform.python_version()} (as asked)",
    )
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if not installed: the import fails
    fallback = choose("auto")
    assert fallback.describe() == f"asyncio {platform.python_version()} (uvloop is not installed)"
    with pytest.raises(EventLoopError, match="uvloop is not installed here; install it or use --event-loop asyncio"):
        choose("uvloop")


def test_an_unknown_loop_is_refused() -> None:
    with pytest.raises(EventLoopError, match="unknown event loop 'trio': choose one of auto, uvloop, asyncio"):
        choose("trio")


async def test_the_suite_runs_on_the_exporters_default_loop_and_build_info_says_so() -> None:
    expected = choose("auto").name
    assert event_loop_name() == expected
    assert type(asyncio.get_running_loop()).__module__.partition(".")[0] == expected
    (family,) = build_info_families()
    assert f'event_loop="{expected}"' in family.label_texts[0]
