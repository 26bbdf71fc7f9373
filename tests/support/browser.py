"""A real browser for the tests: Debian's headless ``chromium``, run once per page as a person would open it.

Each run has its own throw-away profile and no network beyond loopback (no sync, updates, QUIC or first-run
pages). Without ``chromium`` the test is skipped, or fails under ``PULSATRIX_REQUIRE_E2E=1`` (as ``.ci/run`` sets).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile

import pytest

from tests.support.servers import REQUIRE_ENV

FLAGS = (
    "--headless",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",  # a screenshot shows the page, not the window's scroll bars
)
TIMEOUT = 90.0  # seconds; a cold start on the shared 2-core machine takes about 3 s


def chromium() -> str:
    """The ``chromium`` binary, or skip (fail under PULSATRIX_REQUIRE_E2E=1)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    message = "chromium not installed (Debian packages chromium, fonts-dejavu-core)"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{message}, but {REQUIRE_ENV}=1")
    pytest.skip(message)


async def open_page(url: str, width: int, *args: str, height: int = 900) -> str:
    """Open ``url`` in a window ``width`` x ``height`` px with ``args`` (``--dump-dom``, ``--screenshot=FILE``, ...)
    and return what Chromium printed on stdout (the DOM after the page ran, for ``--dump-dom``)."""
    binary = chromium()
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        process = await asyncio.create_subprocess_exec(
            binary,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            *args,
            url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=profile,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise
        assert process.returncode == 0, err.decode(errors="replace")[-2000:]
        return out.decode()
