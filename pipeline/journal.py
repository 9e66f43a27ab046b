"""Append-only journals of JSON records with a checksum per line.

Line format: ``<crc32 of the JSON, 8 hex digits> <JSON object>\\n``. A line that was torn by a
crash (no newline, wrong checksum, bad JSON) ends the journal: with appends made in order,
only the tail can be torn, and nothing after a damaged line can be trusted to be in order.
"""

from __future__ import annotations

import json
import os
import zlib
from datetime import datetime
from pathlib import Path
from typing import IO, Any


def _default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot journal {type(value).__name__}")


def encode_line(record: dict[str, Any]) -> bytes:
    """One journal line for a JSON-able record (datetimes become ISO 8601)."""
    payload = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=_default)
    data = payload.encode()
    return b"%08x %s\n" % (zlib.crc32(data), data)


def decode_line(line: bytes) -> dict[str, Any] | None:
    """The record in a journal line, or None if the line is torn or corrupt."""
    if len(line) < 11 or not line.endswith(b"\n") or line[8:9] != b" ":
        return None
    payload = line[9:-1]
    try:
        if int(line[:8], 16) != zlib.crc32(payload):
            return None
        data = json.loads(payload)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def read_journal(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The intact records of a journal, and the byte length of its intact prefix."""
    records: list[dict[str, Any]] = []
    good = 0
    if not path.exists():
        return records, good
    with open(path, "rb") as f:
        for line in f:
            record = decode_line(line)
            if record is None:
                break
            records.append(record)
            good += len(line)
    return records, good


class Journal:
    """An open journal file. ``durable`` journals fsync every append."""

    def __init__(self, path: Path, *, durable: bool) -> None:
        self.path = path
        self.durable = durable
        self._file: IO[bytes] | None = None

    def open(self) -> None:
        """Open for appending, first cutting off a torn tail so new lines follow intact ones."""
        _, good = read_journal(self.path)
        self._file = open(self.path, "ab")  # noqa: SIM115 (held open until close)
        self._file.truncate(good)

    def append(self, records: list[dict[str, Any]]) -> None:
        """Write records as one group; with ``durable``, one fsync for the whole group."""
        assert self._file is not None, "journal not open"
        self._file.write(b"".join(encode_line(r) for r in records))
        self._file.flush()
        if self.durable:
            os.fsync(self._file.fileno())

    def clear(self) -> None:
        """Empty the journal (its records are safe elsewhere)."""
        if self._file is not None:
            self._file.truncate(0)
            self._file.seek(0)
        else:
            self.path.unlink(missing_ok=True)

    def close(self, *, remove: bool) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if remove:
            self.path.unlink(missing_ok=True)
