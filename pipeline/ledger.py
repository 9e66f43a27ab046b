"""The results ledger: an fsynced append-only journal folded into ``ledger.parquet``.

A row counts as done only once its record is durable in the journal, and its record is only
written after its images were renamed into place. On start, the journal is read back (a torn
or corrupt tail is dropped) and folded into the Parquet file, so ``ledger.parquet`` always
holds exactly one row per manifest row that reached an outcome: the latest one.

Journal line format: ``<crc32 of the JSON, 8 hex digits> <JSON record>\\n``.
"""

from __future__ import annotations

import fcntl
import json
import os
import zlib
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.errors import OutDirLocked, UsageError
from pipeline.storage import IMAGES_DIR, clean_temp_files, fsync_dir

LEDGER_FILE = "ledger.parquet"
JOURNAL_FILE = "ledger.journal"
LOCK_FILE = ".lock"
LEDGER_VERSION = "1"

SCHEMA = pa.schema(
    [
        ("row_id", pa.string()),
        ("line", pa.int64()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("http_status", pa.int32()),
        ("attempts", pa.int32()),
        ("model", pa.string()),
        ("image_size", pa.string()),
        ("aspect_ratio", pa.string()),
        ("output_paths", pa.list_(pa.string())),
        ("sha256", pa.list_(pa.string())),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("mime_type", pa.string()),
        ("text", pa.string()),
        ("prompt_tokens", pa.int32()),
        ("output_tokens", pa.int32()),
        ("thoughts_tokens", pa.int32()),
        ("latency_ms", pa.float64()),
        ("finished_at", pa.timestamp("ms", tz="UTC")),
        ("error", pa.string()),
        ("fingerprint", pa.string()),
        ("prompt", pa.string()),
    ],
    metadata={"nanobatch.ledger_version": LEDGER_VERSION},
)


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    """One row of the ledger; field names are the column names (an external interface)."""

    row_id: str
    line: int
    status: str
    reason: str
    model: str
    prompt: str
    attempts: int = 0
    http_status: int | None = None
    image_size: str | None = None
    aspect_ratio: str | None = None
    output_paths: list[str] = field(default_factory=list)
    sha256: list[str] = field(default_factory=list)
    width: int | None = None
    height: int | None = None
    mime_type: str | None = None
    text: str | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    thoughts_tokens: int | None = None
    latency_ms: float | None = None
    finished_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    error: str | None = None
    fingerprint: str | None = None


def encode_line(record: LedgerRecord) -> bytes:
    """A journal line for the record, with the checksum that detects a torn write."""
    data = asdict(record)
    data["finished_at"] = record.finished_at.isoformat()
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


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
    if not isinstance(data, dict) or not isinstance(data.get("row_id"), str):
        return None
    data["finished_at"] = datetime.fromisoformat(data["finished_at"])
    return data


def read_journal(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Valid records of a journal, and the byte length of its valid prefix.

    Reading stops at the first bad line: with appends fsynced in order, only the tail can
    be torn, and anything after a corrupt line cannot be trusted to be in order.
    """
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


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SCHEMA)


class Ledger:
    """Owns the output directory for one run: lock, journal, Parquet ledger."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self._lock_fd: int | None = None
        self._journal: Any = None  # binary file object once opened
        self._pending = 0  # records in the journal not yet folded into Parquet

    def open(self) -> None:
        """Lock the directory, recover from any crash, and start a fresh journal."""
        (self.out_dir / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
        self._lock()
        clean_temp_files(self.out_dir)
        self.compact()
        self._journal = open(self.out_dir / JOURNAL_FILE, "ab")  # noqa: SIM115 (owned until close)

    def _lock(self) -> None:
        # flock dies with its process, so a killed run never leaves the directory locked.
        fd = os.open(self.out_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise OutDirLocked(
                f"{self.out_dir} is in use by a running nanobatch (pid {holder}); "
                "wait for it to finish or stop it, or pick another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def append(self, records: list[LedgerRecord]) -> None:
        """Make records durable: one write and one fsync for the whole group."""
        if not records:
            return
        self._journal.write(b"".join(encode_line(r) for r in records))
        self._journal.flush()
        os.fsync(self._journal.fileno())
        self._pending += len(records)

    def compact(self) -> None:
        """Fold the journal into ledger.parquet (atomically), then empty the journal."""
        journal = self.out_dir / JOURNAL_FILE
        records, _ = read_journal(journal)
        if records:
            latest = {r["row_id"]: r for r in records}  # a later record supersedes an earlier one
            fresh = _table(list(latest.values()))
            table = self.read()
            if table is not None:
                keep = pc.invert(pc.is_in(table["row_id"], value_set=fresh["row_id"]))
                table = pa.concat_tables([table.filter(keep), fresh])
            else:
                table = fresh
            tmp = self.out_dir / f".tmp-{os.getpid()}-{LEDGER_FILE}"
            pq.write_table(table, tmp, compression="zstd")
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, self.out_dir / LEDGER_FILE)
            fsync_dir(self.out_dir)
        if self._journal is not None:
            self._journal.truncate(0)
            self._journal.seek(0)
        elif journal.exists():
            journal.unlink()
        self._pending = 0

    def read(self, columns: list[str] | None = None) -> pa.Table | None:
        """The folded ledger (without journal records not yet compacted), or None if empty."""
        path = self.out_dir / LEDGER_FILE
        if not path.exists():
            return None
        try:
            table = pq.read_table(path, columns=columns)
        except (pa.ArrowInvalid, OSError) as e:
            raise UsageError(f"{path} is not a readable ledger ({e}); move it away") from None
        if columns is None and table.schema.metadata != SCHEMA.metadata:
            table = table.cast(SCHEMA)  # a ledger written by an older version
        return table

    def close(self) -> None:
        """Fold the journal into Parquet and release the directory."""
        try:
            if self._journal is not None:
                self.compact()
                self._journal.close()
                self._journal = None
                (self.out_dir / JOURNAL_FILE).unlink(missing_ok=True)
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
