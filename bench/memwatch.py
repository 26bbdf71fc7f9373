"""The exporter with a memory probe, for the soak benchmark (``bench/fleet.py --soak``): where RSS goes.

    python bench/memwatch.py OUT [--tracemalloc] -- EXPORTER-ARGS...

Runs ``python -m exporter EXPORTER-ARGS`` in this process (from the current directory's ``exporter``). On every
SIGUSR2 it appends one JSON line to OUT: RSS, the interpreter's allocated blocks (``sys.getallocatedblocks``), the
objects the garbage collector tracks (``len(gc.get_objects())``), the frozen ones, the collections per generation
so far, Python's arenas and glibc's heap (in use, freed but kept, mmapped), and with ``--tracemalloc`` the ten
source lines whose allocations grew most since the first sample. So a rising RSS can be told apart: Python objects
that pile up (blocks and objects rise with it), memory allocated in C under Python (glibc's heap in use), and the
allocators' arenas settling (the free part). Nothing of this is in the exporter itself.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import signal
import sys
import tempfile
import tracemalloc
from pathlib import Path
from types import FrameType
from typing import Any

from harness import rss_bytes  # bench/ is not a package: this script's directory is on the path


class MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (glibc 2.33 and later): the C heap under Python's allocator."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                     "keepcost")
    ]  # fmt: skip


def c_heap() -> dict[str, int]:
    """Bytes of the C heap: ``in_use`` (malloc'd, not freed), ``free`` (freed but kept in the heap's arenas),
    ``mmapped`` (large blocks of their own); empty where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(None)  # the process's own C library
        mallinfo2 = libc.mallinfo2
    except (OSError, AttributeError):
        return {}
    mallinfo2.restype = MallInfo2
    info = mallinfo2()
    return {"in_use": info.uordblks, "free": info.fordblks, "mmapped": info.hblkhd}


def pymalloc_arenas() -> int:
    """Python's own arenas (1 MiB each on 64-bit CPython 3.10+) in use, from ``sys._debugmallocstats``."""
    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode(errors="replace")
    for line in text.splitlines():
        if line.startswith("# arenas allocated current"):
            return int(line.split("=")[1].replace(",", ""))
    return -1


class Probe:
    def __init__(self, out: Path, trace: bool) -> None:
        self.out = out
        self.trace = trace
        self.first: tracemalloc.Snapshot | None = None
        if trace:
            tracemalloc.start(1)

    def sample(self, _signum: int, _frame: FrameType | None) -> None:
        line: dict[str, Any] = {
            "rss": rss_bytes(os.getpid()),
            "blocks": sys.getallocatedblocks(),
            "objects": len(gc.get_objects()),
            "frozen": gc.get_freeze_count(),
            "collections": [s["collections"] for s in gc.get_stats()],
            "pymalloc_arenas": pymalloc_arenas(),
            "c_heap": c_heap(),
        }
        if self.trace:
            snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
            if self.first is None:
                self.first = snapshot
            line["traced"] = tracemalloc.get_traced_memory()[0]
            line["top"] = [
                {"where": str(stat.traceback[0]), "size_diff": stat.size_diff, "count_diff": stat.count_diff}
                for stat in snapshot.compare_to(self.first, "lineno")[:10]
            ]
        with self.out.open("a") as file:
            file.write(json.dumps(line) + "\n")


def main(argv: list[str]) -> int:
    if "--" not in argv or not argv:
        raise SystemExit(__doc__)
    split = argv.index("--")
    ours, exporter_args = argv[:split], argv[split + 1 :]
    probe = Probe(Path(ours[0]), "--tracemalloc" in ours[1:])
    signal.signal(signal.SIGUSR2, probe.sample)
    sys.path.insert(0, os.getcwd())
    from exporter.cli import main as exporter_main

    return exporter_main(exporter_args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
