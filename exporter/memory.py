"""Keep the C heap from creeping: large buffers in memory of their own, returned to the system when freed.

Every scrape allocates a few buffers of hundreds of KiB (the exposition, zlib's state, large replies) and frees
them again. glibc serves a block that large with ``mmap`` and gives it back on ``free``, but only until the first
such block is freed: then it raises its threshold to that block's size (up to 32 MiB), and from there on such
buffers come from the heap, between small long-lived objects, where the pages they leave behind stay resident.
In a soak of 200 chargers that is how RSS kept rising while Python's own memory stayed flat: glibc's heap in use
flat, its freed-but-kept part growing scrape after scrape. Pinning the threshold at glibc's default of 128 KiB
(which also stops it from moving) keeps that part small and RSS flat (docs/benchmark/soak.md: both soaks, and the
command that runs them).

:func:`pin_mmap_threshold` does so once at start. It leaves the allocator alone where the C library is not glibc
(musl, macOS), and where an operator tuned it (``MALLOC_MMAP_THRESHOLD_``, or a ``glibc.malloc.`` tunable in
``GLIBC_TUNABLES``): their own setting wins.
"""

from __future__ import annotations

import logging
import os
from typing import Final

log = logging.getLogger("exporter.memory")

M_MMAP_THRESHOLD: Final = -3  # glibc's <malloc.h>
MMAP_THRESHOLD: Final = 128 * 1024  # glibc's default, kept fixed


def pin_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD`; True if it was set. Never fails."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None)  # the process's own symbols: the C library it runs on
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - glibc only: musl has a mallopt that does nothing
    except (ImportError, OSError, AttributeError, MemoryError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1:
        log.debug("glibc refused mallopt(M_MMAP_THRESHOLD)")
        return False
    return True
