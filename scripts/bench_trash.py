"""What the benchmark deletes, deleted when no client is being measured.

This machine's root file system is ext4 without a journal, and there ext4 does not hand out an
inode freed less than 60 s ago, or 5 minutes more while the block of the inode table that holds
it is not yet written back (``RECENTCY_MIN`` and ``RECENTCY_DIRTY`` in ``fs/ext4/ialloc.c``):
every file created in that window first looks up each such inode's block and skips it
(``recently_deleted`` in the kernel's inode allocator). Deleting a client's thousands of
images and records, then starting the next client at once, billed that scan to the next client:
perf showed ~20% of a 512 px run's CPU in ``ext4_create`` -> ``recently_deleted``, and a run's
worker threads spent 6 s of system time per 2,000 rows after a deletion against 3 s with none in
the previous 30 s. So a measured folder is moved aside (one rename) and emptied at the end of the
bench, or earlier if the disk runs short, followed by a wait that lets the window pass.
"""

from __future__ import annotations

import itertools
import shutil
import time
from pathlib import Path

from measure import progress

LOW_DISK_BYTES = 20 * 10**9  # below this much free space, empty the trash at once
# ext4's "recently deleted" window: 60 s once the freed inodes' table blocks are written back,
# which the kernel does within ~35 s (dirty_expire_centisecs plus one writeback interval).
RECENT_S = 65

_bins: set[Path] = set()
_names = itertools.count()


def discard(path: Path) -> None:
    """Move ``path`` (a folder or a file) out of the way, to be deleted by ``empty``."""
    if not path.exists():
        return
    trash = path.parent / ".bench-trash"
    trash.mkdir(exist_ok=True)
    _bins.add(trash)
    path.rename(trash / f"{next(_names)}-{path.name}")
    if shutil.disk_usage(trash).free < LOW_DISK_BYTES:
        progress("    disk short: emptying the bench's trash now, then waiting out ext4's window")
        empty(wait=True)


def empty(*, wait: bool = False) -> None:
    """Delete everything discarded so far; ``wait``: then sleep until ext4 reuses the inodes."""
    for trash in sorted(_bins):
        shutil.rmtree(trash, ignore_errors=True)
    _bins.clear()
    if wait:
        time.sleep(RECENT_S)
