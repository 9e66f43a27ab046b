"""Where a row's images are written: on the event loop while the disk keeps up, in a worker
thread otherwise.

Handing a small image's write to a worker thread cost more of the process's CPU than the write
itself: the worker takes the interpreter lock back after each of its system calls (open, write,
fsync, rename, close), each time from a busy event loop, a futex wait and a context switch
apiece. Writing a 512 px image on the loop instead took the process's CPU per row down by a
tenth to a fifth, with the same wall time and a slightly higher request rate (a row's slot is
let go sooner), because the write, fsync included, takes ~0.4 ms here (docs/benchmarks.md).

A slow disk must not stall every request in flight, so a write on the loop is timed: one that
took longer than ``INLINE_MAX_S`` sends the next ``THREADED_AFTER_SLOW`` writes to worker
threads, after which one more is tried on the loop. On a disk that is always slow, the loop
waits for one write in that many. An image already in a file (an answer spooled as it arrived,
the large ones) is always moved and fsynced in a thread: its fsync flushes megabytes; so are
images held in memory beyond ``INLINE_MAX_BYTES`` (a batch job's results, a downloaded link).
Until a run's first write has been made, in a thread, writes go to threads too: it opens the
provenance journal, which reads the journal whole to cut off a torn tail (~0.4 s for a million
rows' lines) under the lock every write takes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pipeline.core.types import ImagePart

# A write on the loop slower than this: the disk is not keeping up. Not 5 ms: this VM's
# fsync passes 5 ms about once in 600 writes (5.1-9.3 ms), and each trip sent 64 writes to
# threads, a tenth of a 5,000-row run's, for nothing (docs/benchmarks.md).
INLINE_MAX_S = 0.010
THREADED_AFTER_SLOW = 64  # writes sent to threads after a slow one, before the loop tries again
INLINE_MAX_BYTES = 2 << 20  # a row's images above this are hashed and written in a thread


class Placement:
    """Decides, write by write, whether a row's images are written on the event loop."""

    def __init__(self, timer: Callable[[], float] = time.perf_counter) -> None:
        self.timer = timer  # times a write on the loop (a real clock: it measures the disk)
        self._threaded = 0  # writes still to send to threads after a slow one
        self._started = False  # a first write has been made (in a thread)

    def inline(self, images: tuple[ImagePart, ...]) -> bool:
        """True: write ``images`` on the event loop (then report its time to ``took``)."""
        if any(image.spooled for image in images):
            return False
        if sum(image.size for image in images) > INLINE_MAX_BYTES:
            return False
        if not self._started:
            return False
        if self._threaded:
            self._threaded -= 1
            return False
        return True

    def made(self) -> None:
        """A write in a thread succeeded: the run's writes may go on the loop from now."""
        self._started = True

    def took(self, seconds: float) -> None:
        """A write on the loop took ``seconds``: a slow one sends the next ones to threads."""
        if seconds > INLINE_MAX_S:
            self._threaded = THREADED_AFTER_SLOW
