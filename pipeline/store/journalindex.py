"""The latest line for a key in a checksummed journal (``store/journal.py``), found without
holding the journal's records in memory.

A resume looks up every pending row's provenance record (``store/provenance.py``), and a
folder of a million rows has a million lines: holding them as records took ~840 MB and 9 s of
CPU for the first lookup. The index holds, per line, the key's hash and the line's offset
(16 bytes), sorted, and reads a line back only for a key whose hash it holds: a key with no
line (most pending rows) costs a binary search.

Building the index reads each line's key where the journal's encoder puts it, the first key
(``{"stem":"...``), without decoding the line or checking its checksum: that is done when a
line is read back for a lookup, and a line that fails it is passed over there as it was here
(a million lines: ~3 s -> ~1 s, docs/benchmarks.md). A line written otherwise, or whose key
holds an escape, is decoded whole.

The journal only grows while a process reads it: a lookup reads only the lines appended since
the last one (kept apart until there are enough to sort in), and the whole journal again only
if it was replaced, cut short or rewritten.
"""

from __future__ import annotations

import bisect
import threading
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.store.journal import complete_lines, decode_line

_MERGE_AFTER = 1 << 16  # lines read since the last sort, kept in a dict until there are more
_HEAD = 9  # a line's checksum and the space after it ("%08x "), before its JSON


class JournalIndex:
    """Offsets of a journal's lines by the hash of their ``field``, for the last journal read.
    Thread-safe: lookups come from the planner's thread while the run's workers append."""

    def __init__(self, field: str, key_hash: Callable[[str], int] = hash) -> None:
        self.field = field
        self.key_hash = key_hash  # a process's own str hash: the index lives in one process
        self._lock = threading.Lock()
        self._path: Path | None = None
        self._stat: tuple[int, int, int, int] | None = None  # dev, inode, size, mtime as read
        self._end = 0  # where the complete lines read so far end
        self._last = (0, b"")  # the last of them (offset, bytes): still there to read on from
        # Sorted by (hash, offset): a key's lines are together, its latest last.
        self._hashes = array("q")
        self._offsets = array("q")
        self._recent: dict[int, list[int]] = {}  # hash -> offsets, read since the last sort
        self._recent_lines = 0
        # How the journal's encoder begins a line whose first key is ``field``.
        self._prefix = b'{"' + field.encode() + b'":"'

    def get(
        self, path: Path, key: str, accept: Callable[[dict[str, Any]], bool] = bool
    ) -> dict[str, Any] | None:
        """The record of ``path``'s latest intact line whose ``field`` is ``key`` and that
        ``accept`` takes, if any."""
        try:
            stat = path.stat()
        except OSError:
            return None
        now = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if path != self._path or now != self._stat:
                try:
                    self._read(path, now)
                except BaseException:
                    self._path = self._stat = None  # half read or unsorted: read again whole
                    raise
            wanted = self.key_hash(key)
            hashes = self._hashes
            i = j = bisect.bisect_left(hashes, wanted)
            while j < len(hashes) and hashes[j] == wanted:
                j += 1
            recent = self._recent.get(wanted)
            if i == j and not recent:
                return None  # no line has the key (a pending row's usual answer)
            offsets = [*self._offsets[i:j], *(recent or ())]  # the recent ones are newer
            for offset in reversed(offsets):
                try:
                    record = _record_at(path, offset)
                except OSError:
                    # Unreadable now (a failing disk): not damaged, so an older line must not
                    # stand in for it (a verify --fix reject hiding a good record, a newer
                    # request's fingerprint): no record, as for an unreadable older file.
                    return None
                if record is not None and record.get(self.field) == key and accept(record):
                    return record
        return None

    def _read(self, path: Path, now: tuple[int, int, int, int]) -> None:
        before = self._stat
        grown = (
            path == self._path
            and before is not None
            and now[:2] == before[:2]  # the same file
            and now[2] > before[2]  # appended to: a same-size change is read again whole
            and now[2] >= self._end
            and _bytes_at(path, *self._last)
        )
        if not grown:
            self._hashes, self._offsets = array("q"), array("q")
            self._recent, self._recent_lines = {}, 0
            self._end, self._last = 0, (0, b"")
        hashes, offsets = array("q"), array("q")  # read now, not yet sorted in
        end, last = self._end, self._last[0]
        field, key_hash, prefix = self.field, self.key_hash, self._prefix
        start = _HEAD + len(prefix)
        for last, data in complete_lines(path, end):
            end = last + len(data)
            close = data.find(b'"', start) if data.startswith(prefix, _HEAD) else -1
            if close > 0 and b"\\" not in (raw := data[start:close]):
                try:
                    key: object = raw.decode()
                except UnicodeDecodeError:
                    continue  # damaged: it could never be read back as a record
            else:
                # A damaged line's record is lost; a later line for the same key still stands.
                record = decode_line(data)
                key = None if record is None else record.get(field)
            if isinstance(key, str):
                hashes.append(key_hash(key))
                offsets.append(last)
        self._path, self._stat, self._end = path, now, end
        self._last = (last, _read_at(path, last, end - last))
        if grown and self._recent_lines + len(hashes) <= _MERGE_AFTER:
            for h, offset in zip(hashes, offsets, strict=True):
                self._recent.setdefault(h, []).append(offset)
            self._recent_lines += len(hashes)
            return
        # Sorted in: the lines kept apart since the last sort first (they are older).
        for h, kept in self._recent.items():
            self._hashes.extend([h] * len(kept))
            self._offsets.extend(kept)
        self._recent, self._recent_lines = {}, 0
        self._hashes.extend(hashes)
        self._offsets.extend(offsets)
        self._hashes, self._offsets = _sorted(self._hashes, self._offsets)


def _sorted(hashes: array[int], offsets: array[int]) -> tuple[array[int], array[int]]:
    """Both sorted by (hash, offset), in Arrow: no Python object per line."""
    import pyarrow as pa  # here: only a folder with records to look up needs it
    import pyarrow.compute as pc

    table = pa.table({"h": _column(hashes), "o": _column(offsets)})
    table = table.take(pc.sort_indices(table, [("h", "ascending"), ("o", "ascending")]))
    return _values(table["h"]), _values(table["o"])


def _column(values: array[int]) -> Any:
    import pyarrow as pa

    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def _values(column: Any) -> array[int]:
    out = array("q")
    for chunk in column.chunks:  # the values' buffer, read in place
        out.frombytes(
            memoryview(chunk.buffers()[1])[chunk.offset * 8 : (chunk.offset + len(chunk)) * 8]
        )
    return out


def _record_at(path: Path, offset: int) -> dict[str, Any] | None:
    """The record of the line at ``offset`` (None: not an intact line); raises ``OSError``."""
    with open(path, "rb") as f:
        f.seek(offset)
        line = f.readline()
    return decode_line(line)


def _read_at(path: Path, offset: int, size: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(size)
    except OSError:
        return b""


def _bytes_at(path: Path, offset: int, data: bytes) -> bool:
    """Whether ``path`` holds ``data`` at ``offset``."""
    return _read_at(path, offset, len(data)) == data
