"""Append-only journals of JSON records with a checksum per line.

Line format: ``<crc32 of the JSON, 8 hex digits> <JSON object>\n``. A crash can only tear
the last line (appends are made in order): a last line without its newline is dropped
silently. A complete line that fails its checksum was damaged after it was written (a flipped
bit on disk): it is reported as ``Damaged``, with the row ids its bytes still show, and the
intact lines after it are kept (each line stands on its own, so one bad line costs one record).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import orjson
import structlog

from pipeline.core.jsonread import loads

log = structlog.get_logger("nanobatch")

_ROW_ID = re.compile(rb'"row_id":"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True, slots=True)
class Damaged:
    """A complete journal line that fails its checksum: its record is lost."""

    offset: int  # byte offset of the line in the journal
    data: bytes  # the line as found

    @property
    def row_ids(self) -> list[str]:
        """The row ids the damaged bytes still show (the flipped byte may be in one of them)."""
        return [m.decode(errors="replace") for m in _ROW_ID.findall(self.data)]


def _default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot journal {type(value).__name__}")


def encode_line(record: dict[str, Any]) -> bytes:
    """One journal line for a JSON-able record (datetimes become ISO 8601)."""
    try:
        # orjson: a few times faster than the standard library, byte for byte the same line
        # for what records hold (str, int, float, bool, None, lists, datetimes).
        data = orjson.dumps(record, default=_default)
    except orjson.JSONEncodeError:  # what orjson refuses (an int beyond 64 bits)
        text = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=_default)
        data = text.encode()
    return b"%08x %s\n" % (zlib.crc32(data), data)


def decode_line(line: bytes) -> dict[str, Any] | None:
    """The record in a journal line, or None if the line is torn or corrupt."""
    if len(line) < 11 or not line.endswith(b"\n") or line[8:9] != b" ":
        return None
    payload = line[9:-1]
    try:
        if int(line[:8], 16) != zlib.crc32(payload):
            return None
        data = loads(payload)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def complete_lines(path: Path, start: int = 0) -> Iterator[tuple[int, bytes]]:
    """(offset, line) of each newline-terminated line from byte ``start`` (a line's start)
    on; a torn last line is left out."""
    if not path.exists():
        return
    offset = start
    with open(path, "rb") as f:
        f.seek(start)
        for line in f:
            if not line.endswith(b"\n"):
                return
            yield offset, line
            offset += len(line)


def scan_journal(path: Path) -> Iterator[dict[str, Any] | Damaged]:
    """Each record of a journal in order, and a ``Damaged`` for each complete line that fails
    its checksum; a torn last line (a crash while writing it) is left out."""
    for offset, line in complete_lines(path):
        record = decode_line(line)
        yield record if record is not None else Damaged(offset, line)


def scan_from(path: Path, start: int) -> Iterator[tuple[int, dict[str, Any] | Damaged]]:
    """``scan_journal`` from byte ``start`` (where a line begins), each item with the offset
    just past its line: where a later scan of what was appended since goes on from."""
    for offset, line in complete_lines(path, start):
        record = decode_line(line)
        yield offset + len(line), record if record is not None else Damaged(offset, line)


def keep_damaged(journal: Path) -> list[Damaged]:
    """Find the journal's damaged records, say what was lost, and keep their bytes in
    ``<journal>.damaged`` (the fold that follows empties the journal)."""
    damaged = [item for item in scan_journal(journal) if isinstance(item, Damaged)]
    if damaged:
        with open(journal.with_name(journal.name + ".damaged"), "ab") as f:
            f.write(b"".join(d.data for d in damaged))
            os.fsync(f.fileno())
        rows = [row_id for d in damaged for row_id in d.row_ids]
        log.warning(
            "ledger.journal_damaged",
            records=len(damaged),
            rows=", ".join(rows) or "unreadable",
            kept=f"{journal.name}.damaged",
            meaning="those rows' images, if on disk, are adopted; other rows are sent again",
        )
    return damaged


def complete_length(path: Path) -> int:
    """The byte length of a journal's complete lines (all but a torn tail), streamed."""
    good = 0
    for offset, line in complete_lines(path):
        good = offset + len(line)
    return good


class Journal:
    """An open journal file. ``durable`` journals fsync every append. ``sole``: no other
    process appends to it while it is open (so its length need not be asked for each group)."""

    def __init__(self, path: Path, *, durable: bool, sole: bool = False) -> None:
        self.path = path
        self.durable = durable
        self._sole = sole
        self._file: IO[bytes] | None = None
        # With ``sole``, the file's length as this object left it (None: not known, as after a
        # failed rollback), so that ``mark`` need not ask the file: an fstat per append was a
        # system call per record on the event loop. Without, another process (``batch
        # cancel``) may have appended, and only the file knows.
        self._size: int | None = None
        # Where a failed rollback should have cut the file (None: nothing left to cut), and
        # the file's length when it could not (None: unknown): without ``sole``, a length that
        # differs since means another process appended after the torn bytes.
        self._torn: int | None = None
        self._torn_end: int | None = None

    def open(self) -> None:
        """Open for appending, first cutting off a torn tail so new lines follow intact ones."""
        good = complete_length(self.path)
        # Unbuffered: a failed append (disk full) must leave no bytes behind to be flushed later.
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 (held open until close)
        self._file.truncate(good)
        self._size, self._torn = good, None

    def mark(self) -> int:
        """The journal's length now, for ``rollback``."""
        assert self._file is not None, "journal not open"
        if self._torn is not None:
            # The length it has once the pending cut is made. (Where another process appends,
            # the cut may keep the torn bytes instead; only the batch book is appended to so,
            # and it is never marked from outside its own appends.)
            return self._torn
        if self._size is None or not self._sole:
            self._size = os.fstat(self._file.fileno()).st_size
        return self._size

    def rollback(self, mark: int) -> None:
        """Cut off what was appended after ``mark`` (best effort: the disk may be failing)."""
        # If even that fails, the next append cuts it off first (``_cut_torn``), and a reader
        # drops the torn tail meanwhile.
        if self._file is not None:
            self._size = None  # unknown until the truncate is known to have worked
            self._torn, self._torn_end = mark, None
            try:
                self._file.truncate(mark)
            except OSError:
                with contextlib.suppress(OSError):
                    self._torn_end = os.fstat(self._file.fileno()).st_size
            else:
                self._size, self._torn = mark, None

    def _cut_torn(self) -> None:
        """Cut off the part of a group a failed rollback left; raises ``OSError`` if it still
        cannot be. A line appended after it would be glued to it, and fail its checksum: a
        record lost, and its row sent and paid for again."""
        assert self._file is not None
        assert self._torn is not None
        if self._sole:
            self._file.truncate(self._torn)
            self._size, self._torn = self._torn, None
            return
        # Under the lock other processes' appends take (``append_shared``): none can fall
        # between this length check and the truncate.
        fd = self._file.fileno()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            size = os.fstat(fd).st_size
            if size == self._torn_end:
                self._file.truncate(self._torn)
                self._size, self._torn = self._torn, None
                return
            # Another process appended since (closing the torn tail with a newline first): its
            # lines stay, and the torn bytes are one damaged line of their own.
            with open(self.path, "rb") as f:  # ours is write-only
                f.seek(max(size - 1, 0))
                if size and f.read(1) != b"\n":
                    self._file.write(b"\n")
            self._size, self._torn = None, None
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def append(self, records: list[dict[str, Any]]) -> None:
        """Write records as one group; with ``durable``, one fsync for the whole group.

        All or nothing: a failed write (disk full) cuts off its partial lines and raises, so
        writing the group again later cannot leave a torn line in the middle of the journal.
        """
        assert self._file is not None, "journal not open"
        data = memoryview(b"".join(encode_line(r) for r in records))
        if self._torn is not None:
            self._cut_torn()  # raises: nothing is appended after a torn tail
        start = self.mark()
        try:
            size = start + len(data)
            while data:
                data = data[self._file.write(data) or 0 :]
            self._size = size
            if self.durable:
                os.fsync(self._file.fileno())
        except OSError:
            self.rollback(start)
            raise

    def sync(self) -> None:
        """Make what was appended durable (for journals that are not ``durable``)."""
        assert self._file is not None, "journal not open"
        os.fsync(self._file.fileno())

    def clear(self) -> None:
        """Empty the journal (its records are safe elsewhere)."""
        if self._file is not None:
            self._file.truncate(0)
            self._file.seek(0)
            self._size, self._torn = 0, None
        else:
            self.path.unlink(missing_ok=True)

    def close(self, *, remove: bool) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if remove:
            self.path.unlink(missing_ok=True)


def append_shared(path: Path, records: list[dict[str, Any]]) -> None:
    """Append ``records`` durably to a journal another process may hold open (a run's batch
    book): one appended write under the lock a torn tail's cut takes, a torn tail a killed
    process left closed with a newline first, so it stays one damaged line of its own."""
    data = b"".join(encode_line(r) for r in records)
    if not data:
        return
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)  # and the lock with it
