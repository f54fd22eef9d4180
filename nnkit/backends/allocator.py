"""Freed memory kept in the process for the next step (glibc's ``malloc`` on Linux).

A batched step on the host makes temporaries of a few hundred KB each (case P14 on the
``numpy`` backend: some thirty ``(200, 14, 14)`` arrays per step). By default glibc maps
blocks that large afresh, or hands the top of its heap back to the system once enough
of it is free, so the next step takes a page fault on every 4 KiB page it writes: on
the virtual machines measured, an elementwise operation on such an array took 8x as
long as on reused memory, and P14 on ``numpy`` ran 1.4x slower. :func:`keep_freed_memory`
raises both thresholds (``mallopt``), so that such blocks come from the heap and stay
there; the process keeps up to :data:`TRIM_THRESHOLD` of freed memory.

Every :func:`nnkit.backends.get` calls it. ``NNKIT_MALLOC=default`` leaves the allocator
as it is, and so does a ``GLIBC_TUNABLES`` that sets malloc's own tunables.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: ``mallopt`` parameters (glibc's ``malloc.h``)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: blocks up to this size come from the heap (glibc's own ceiling for its moving threshold)
MMAP_THRESHOLD = 32 * 2**20
#: free memory at the top of the heap kept rather than handed back
TRIM_THRESHOLD = 256 * 2**20

_applied = False


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process, once; whether they are
    raised (False off Linux, without glibc, or when the environment says not to)."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("NNKIT_MALLOC", "").lower() == "default":
        return False
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied
