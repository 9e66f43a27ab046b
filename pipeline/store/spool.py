"""An image written to disk while its answer is still arriving: a temp file in ``DIR/.tmp/``,
hashed as it is written, later renamed into ``images/`` (``storage.store_images``) or removed.

A run killed meanwhile leaves only the temp file, which the next run's ``clean_temp_files``
removes. When the disk refuses a write (full, read-only), the image goes on in memory: the
answer is paid for, and the run's disk guard (``diskspace``) decides what to do with it when
it is stored, exactly as for an image that was never spooled.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pipeline.core.types import SpooledFile
from pipeline.store import storage

HEAD_BYTES = 32  # enough for every image signature ``mime.sniff`` knows


class Spool:
    """One image being written. ``write`` the decoded bytes as they come, then ``close`` (the
    file, or the bytes when the disk refused them) or ``discard``."""

    __slots__ = ("_fd", "_hash", "_head", "_memory", "_size", "path")

    def __init__(self, folder: Path) -> None:
        # Not mkstemp: its files are 0600, and an image must get the mode every output gets
        # (0644 less the umask, as ``write_atomic`` creates them).
        fd, path = storage.create_new(folder, "spool-", 0o644, make_folder=True)
        self._fd: int | None = fd
        self.path = str(path)
        self._hash = hashlib.sha256()
        self._head = b""
        self._size = 0
        self._memory: bytearray | None = None  # the bytes, once the disk refused a write

    def write(self, data: bytes) -> None:
        if len(self._head) < HEAD_BYTES:
            self._head += data[: HEAD_BYTES - len(self._head)]
        self._size += len(data)
        self._hash.update(data)
        if self._memory is not None:
            self._memory += data
            return
        assert self._fd is not None, "write after close"
        try:
            storage.write_all(self._fd, data)  # the one place file contents are written
        except OSError:
            self._to_memory(data)

    def written(self) -> bytes:
        """Every byte written so far (for an answer that turned out not to be streamable)."""
        if self._memory is not None:
            return bytes(self._memory)
        return Path(self.path).read_bytes()

    def close(self) -> SpooledFile | bytes:
        """The file (not yet fsynced: storing it does that), or the bytes if it went to memory."""
        self._close_fd()
        if self._memory is not None:
            return bytes(self._memory)
        return SpooledFile(self.path, self._size, self._hash.hexdigest(), self._head)

    def discard(self) -> None:
        self._close_fd()
        Path(self.path).unlink(missing_ok=True)

    def _to_memory(self, data: bytes) -> None:
        """The disk refused ``data``: keep what the file holds, and what follows, in memory."""
        self._close_fd()
        kept = Path(self.path).read_bytes()
        Path(self.path).unlink(missing_ok=True)
        # A refused write may have left part of ``data`` in the file: keep only whole writes.
        self._memory = bytearray(kept[: self._size - len(data)]) + data

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
