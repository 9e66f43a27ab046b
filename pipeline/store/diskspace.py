"""Disk trouble during a run: which write errors stop it, and the space kept in reserve.

A full disk (ENOSPC, EDQUOT), a read-only one (EROFS) or an I/O error (EIO) will fail every
following write too: the run stops feeding instead of buying images it cannot keep. The
answers already received are paid for, so a reserve (``DIR/.headroom``, allocated when the
run starts) is given back at the first such error: it holds the images in flight and their
ledger records. What still does not fit is recorded as a failed, possibly billed row.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio
import structlog

from pipeline.core.errors import DiskFull
from pipeline.core.types import ImagePart
from pipeline.store.ledger import AttemptRecord, Ledger, LedgerRecord
from pipeline.store.placement import Placement
from pipeline.store.storage import StoredImage, is_disk_error, store_images

# How a row's images are written: store_images, or a wrapper that writes more (provenance).
ImageWriter = Callable[[Path, str, tuple[ImagePart, ...]], list[StoredImage]]

log = structlog.get_logger("nanobatch")

HEADROOM_FILE = ".headroom"
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})  # the errors that freeing space cures
JOURNAL_RESERVE = 1 << 20  # of the reserve, always left for ledger records (a few KB each)
_PER_IN_FLIGHT = 4 << 20  # one answer: a 1K PNG is ~1.5 MB, a 2K one ~6 MB


def describe(error: OSError) -> str:
    """``ENOSPC: No space left on device``: the name a user can search for, and its words."""
    name = errno.errorcode.get(error.errno or 0, "error")
    return f"{name}: {error.strerror or error}"


def default_headroom(concurrency: int) -> int:
    """Bytes to keep in reserve: a ledger margin plus a typical answer per request in flight."""
    return min(JOURNAL_RESERVE + concurrency * _PER_IN_FLIGHT, 512 << 20)


def open_ledger(ledger: Ledger) -> None:
    """Open the output directory's ledger; a disk too full to fold it is DiskFull (exit 5)."""
    try:
        ledger.open()
    except OSError as e:
        if e.errno not in NO_SPACE:
            raise
        raise DiskFull(
            f"{ledger.out_dir} has no room to fold its ledger ({describe(e)}): "
            "free some space and rerun (nothing was sent)"
        ) from None


def free_bytes(path: Path) -> int:
    """Space an unprivileged writer can still use on ``path``'s file system (0 if unknown)."""
    try:
        stat = os.statvfs(path)
    except OSError:
        return 0
    return stat.f_bavail * stat.f_frsize


class Headroom:
    """A file that holds space for the end of a run: allocated at start, given back on trouble.

    Allocated for real (``posix_fallocate``), not as a sparse file: a sparse file would give
    nothing back.
    """

    def __init__(self, out_dir: Path, size: int) -> None:
        self.path = out_dir / HEADROOM_FILE
        self.size = size
        self.released = False

    def reserve(self) -> None:
        """Allocate the reserve; raises OSError (ENOSPC) if the disk cannot hold it."""
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            if self.size:
                os.posix_fallocate(fd, 0, self.size)
        except OSError:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            raise
        os.close(fd)

    def release(self) -> bool:
        """Give the space back (once); True the first time."""
        if self.released:
            return False
        self.released = True
        self.path.unlink(missing_ok=True)
        return True


class DiskGuard:
    """A run's writes to its output disk (images and ledger records), and what happens when
    the disk fails them: ``on_trouble`` stops the run from feeding, the reserve is given back,
    and each write that failed is tried once more in the space that freed."""

    def __init__(self, out_dir: Path, headroom: int, on_trouble: Callable[[OSError], None]):
        self.out_dir = out_dir
        self.headroom = Headroom(out_dir, headroom)
        self.on_trouble = on_trouble
        self.error: OSError | None = None  # the first disk error, if any
        self.stored_bytes = 0
        self.placement = Placement()  # images written on the event loop or in a thread

    def reserve(self) -> None:
        """Hold the reserve; raises DiskFull if the disk has no room for it (nothing sent)."""
        try:
            self.headroom.reserve()
        except OSError as e:
            if e.errno not in NO_SPACE:
                # fallocate unsupported or similar: run without a reserve rather than not at all
                log.warning("disk.no_reserve", error=describe(e))
                self.headroom.released = True
                return
            free = free_bytes(self.out_dir)
            raise DiskFull(
                f"{self.out_dir} has {_mb(free)} free; a run keeps {_mb(self.headroom.size)} in "
                f"reserve for the answers in flight if the disk fills: free at least "
                f"{_mb(self.headroom.size - free)} more and rerun (nothing was sent)"
            ) from None

    async def store(
        self, stem: str, images: tuple[ImagePart, ...], write: ImageWriter = store_images
    ) -> list[StoredImage] | OSError:
        """Write a row's images; the error if they could not be (the row fails, not the run)."""
        try:
            stored = await self._write(write, stem, images)
        except OSError as e:
            if not is_disk_error(e):
                return e
            self._trouble(e)
            # One more try in the space the reserve gave back, leaving room for the records.
            needed = sum(image.size for image in images) + JOURNAL_RESERVE
            if e.errno not in NO_SPACE or free_bytes(self.out_dir) < needed:
                return e
            try:
                stored = await self._write(write, stem, images)
            except OSError as again:
                return again
        self.stored_bytes += sum(image.size for image in images)
        return stored

    async def _write(
        self, write: ImageWriter, stem: str, images: tuple[ImagePart, ...]
    ) -> list[StoredImage]:
        """``write`` on the event loop while the disk keeps up, else in a worker thread
        (``placement``)."""
        placement = self.placement
        if not placement.inline(images):
            stored = await anyio.to_thread.run_sync(write, self.out_dir, stem, images)
            placement.made()
            return stored
        started = placement.timer()
        try:
            return write(self.out_dir, stem, images)
        finally:
            placement.took(placement.timer() - started)

    async def append(
        self, ledger: Ledger, rows: Sequence[LedgerRecord], attempts: Sequence[AttemptRecord]
    ) -> bool:
        """Make records durable; False if the disk refused them even with the reserve freed."""
        for tries_left in (1, 0):
            try:
                await anyio.to_thread.run_sync(ledger.append, rows, attempts)
                return True
            except OSError as e:
                if not is_disk_error(e):
                    raise
                if tries_left:
                    self._trouble(e)  # frees the reserve: the second try has room
        log.error("disk.records_lost", rows=[r.row_id for r in rows])
        return False

    def release(self) -> None:
        """The run is over: give the reserve back (the ledger's fold may need it)."""
        self.headroom.release()

    def _trouble(self, error: OSError) -> None:
        """The first disk error stops the run from feeding and gives the reserve back."""
        if self.error is None:
            self.error = error
            log.error("disk.trouble", error=describe(error), free=free_bytes(self.out_dir))
            self.on_trouble(error)
        self.headroom.release()


def _mb(size: int) -> str:
    return f"{max(size, 0) / 1e6:.1f} MB"
