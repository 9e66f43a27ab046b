"""How the C heap treats the memory a run frees: kept for reuse rather than handed back to the
kernel and taken again a moment later.

Every answer passes through buffers of hundreds of kilobytes (socket reads, base64 decoded),
freed as soon as they are used. By default glibc returns such memory to the kernel (``munmap``
above its mmap threshold, a trim when the heap's free top passes its trim threshold), so the
next answer's buffers fault in fresh pages the kernel must zero, and on a virtual machine the
host must back. With both thresholds raised, freed buffers are reused in place: at 1K the event
loop's system time per row fell by half (docs/benchmarks.md). A user's own ``MALLOC_*`` or
``GLIBC_TUNABLES`` settings win: the heap is then left as they set it.
"""

from __future__ import annotations

import ctypes
import os
import sys

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest: blocks below it come from the heap
TRIM_THRESHOLD = 256 * 2**20  # free memory the heap may keep at its top
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def keep_freed_memory() -> bool:
    """Raise the heap's thresholds for this process; False where it could not (not glibc) or
    should not (the user tuned the heap)."""
    if not sys.platform.startswith("linux") or any(k in os.environ for k in _USER_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success (0 from a libc that ignores the parameter, such as musl).
    done: list[int] = [mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)]
    done.append(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return done == [1, 1]
