"""exporter/memory.py: large buffers freed by a scrape go back to the system instead of staying in glibc's heap."""

from __future__ import annotations

import ctypes
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc" or not hasattr(ctypes.CDLL(None), "mallinfo2"),
    reason="the mmap threshold is glibc's (mallinfo2: glibc 2.33 and later); elsewhere the exporter leaves it alone",
)

# In a process of its own (the allocator's state is per process): free one 1 MiB buffer, as a scrape frees its
# exposition, then allocate 256 KiB and ask glibc (mallinfo2) where it put it: in a mapping of its own, or in the
# heap, where its pages would stay resident after the next free.
PROGRAM = """
import ctypes, ctypes.util, json, sys
from exporter.memory import pin_mmap_threshold
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]
mallinfo2 = ctypes.CDLL(ctypes.util.find_library("c")).mallinfo2
mallinfo2.restype = MallInfo2
pinned = pin_mmap_threshold() if sys.argv[1] == "pin" else False
big = bytearray(1 << 20)
del big
before = mallinfo2().hblkhd
buffer = bytearray(256 << 10)
print(json.dumps({"pinned": pinned, "mapped": mallinfo2().hblkhd - before}))
"""


def run(mode: str, **env: str) -> dict[str, int]:
    # Without any malloc tuning of the test run's own (MALLOC_*_, GLIBC_TUNABLES), which would move the threshold.
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"} | env
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, cwd=ROOT, env=environ, check=True
    )
    result: dict[str, int] = json.loads(out.stdout)
    return result


def test_a_large_buffer_gets_a_mapping_of_its_own_after_a_free() -> None:
    assert run("leave") == {"pinned": False, "mapped": 0}  # glibc moved its threshold past 256 KiB: in the heap
    pinned = run("pin")
    assert pinned["pinned"] is True
    assert pinned["mapped"] >= 256 << 10  # its own mapping, unmapped again when it is freed


def test_an_operators_own_setting_wins() -> None:
    assert run("pin", MALLOC_MMAP_THRESHOLD_="4194304") == {"pinned": False, "mapped": 0}
    assert run("pin", GLIBC_TUNABLES="glibc.malloc.mmap_threshold=4194304") == {"pinned": False, "mapped": 0}
