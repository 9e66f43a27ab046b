"""The results ledger: an fsynced append-only journal folded into ``ledger.parquet``,
and the attempt history, folded into ``attempts.parquet``.

A row counts as done only once its record is durable in the journal, and its record is only
written after its images were renamed into place. On start, the journal is read back (a torn
or corrupt tail is dropped) and folded into the Parquet file, so ``ledger.parquet`` always
holds exactly one row per manifest row that reached an outcome: the latest one. The columns
and records are ``schema``'s (named here too, for the ledger's callers).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.errors import LedgerDamaged, LedgerNotFolded, OutDirLocked, UsageError
from pipeline.store import filesum
from pipeline.store.fold import FOLD_BATCH, fold_append, fold_latest, row_groups
from pipeline.store.journal import Damaged, Journal, keep_damaged
from pipeline.store.provenance import ProvenanceJournal
from pipeline.store.schema import (
    ATTEMPTS_SCHEMA,
    LEDGER_VERSION,
    SCHEMA,
    AttemptRecord,
    LedgerRecord,
)
from pipeline.store.storage import (
    IMAGES_DIR,
    clean_temp_files,
    fsync_dir,
    is_disk_error,
    output_folders,
)

LEDGER_FILE = "ledger.parquet"
JOURNAL_FILE = "ledger.journal"
ATTEMPTS_FILE = "attempts.parquet"
ATTEMPTS_JOURNAL_FILE = "attempts.journal"
LOCK_FILE = ".lock"
ROW_GROUP_ROWS = 65536

__all__ = [
    "ATTEMPTS_FILE",
    "ATTEMPTS_JOURNAL_FILE",
    "ATTEMPTS_SCHEMA",
    "JOURNAL_FILE",
    "LEDGER_FILE",
    "LEDGER_VERSION",
    "LOCK_FILE",
    "SCHEMA",
    "AttemptRecord",
    "Ledger",
    "LedgerRecord",
]


def _write_parquet(tables: Iterable[pa.Table], schema: pa.Schema, path: Path) -> None:
    """Replace ``path`` atomically and durably with the rows of ``tables``, streamed."""
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        # Page checksums, verified on every read, and a whole-file digest beside it (filesum).
        with pq.ParquetWriter(tmp, schema, compression="zstd", write_page_checksum=True) as writer:
            # Row groups of 64k rows: a resume streams the columns it needs instead of
            # decoding whole million-row column chunks at once.
            for group in row_groups(tables, ROW_GROUP_ROWS):
                writer.write_table(group, row_group_size=ROW_GROUP_ROWS)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        filesum.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk gets the space back
        raise
    fsync_dir(path.parent)


def _as_dict(record: LedgerRecord | AttemptRecord) -> dict[str, Any]:
    """A record's fields by name, for its journal line. Not ``dataclasses.asdict``, which deep-
    copies every value (lists included): a tenth of the ledger writer's CPU per row."""
    names = _FIELDS.get(type(record))
    if names is None:
        names = _FIELDS[type(record)] = tuple(f.name for f in fields(record))
    return {name: getattr(record, name) for name in names}


_FIELDS: dict[type, tuple[str, ...]] = {}


class Ledger:
    """Owns the output directory for one run: lock, journals, Parquet files."""

    def __init__(self, out_dir: Path, *, fold_batch: int = FOLD_BATCH) -> None:
        self.out_dir = out_dir
        self.fold_batch = fold_batch  # journal records decoded at a time when folding
        self.recovered = 0  # records a crashed run left in the journal, folded on open
        self.crashed = False  # the last run did not close cleanly (its journal was still there)
        self.damaged: list[Damaged] = []  # journal records lost to damage on disk, found on open
        self._lock_fd: int | None = None
        self._records = Journal(out_dir / JOURNAL_FILE, durable=True)
        # Attempt history is diagnostics: flushed, not fsynced, per group.
        self._attempts = Journal(out_dir / ATTEMPTS_JOURNAL_FILE, durable=False)
        # Appended before each row's images; made durable here, before the records.
        self.provenance = ProvenanceJournal(out_dir)

    def open(self) -> None:
        """Lock the directory, recover from any crash, and open fresh journals."""
        (self.out_dir / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            clean_temp_files(self.out_dir)
            self._check()  # before anything is sent: a damaged ledger stops the run with exit 2
            self.crashed = self._records.path.exists()
            self.damaged = keep_damaged(self._records.path)
            self.recovered = self.compact()
            self._records.open()
            self._attempts.open()
        except BaseException:
            self._unlock()  # e.g. a full disk: the caller says so; the directory stays usable
            raise

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

    def append(
        self, records: Sequence[LedgerRecord], attempts: Sequence[AttemptRecord] = ()
    ) -> None:
        """Make records durable (one fsync for the group) and note the attempts.

        The provenance journal and the images' folders are fsynced first, so the records of
        what made a group's images, and the renames that put them in place, are durable before
        any record that names them (one fsync per journal, folder and group, not per image).
        """
        mark = self._attempts.mark()
        try:
            if attempts:
                self._attempts.append([_as_dict(a) for a in attempts])
            if records:
                self.provenance.sync()
                folders = set().union(*(output_folders(r.output_paths) for r in records))
                for folder in sorted(folders):
                    fsync_dir(self.out_dir / folder)
                self._records.append([_as_dict(r) for r in records])
        except OSError:
            self._attempts.rollback(mark)  # the group is written again whole, or not at all
            raise

    def _check(self) -> None:
        path = self.out_dir / LEDGER_FILE
        if why := filesum.damage(path):
            raise LedgerDamaged(filesum.damaged_message(path, why))

    def compact(self) -> int:
        """Fold the journals into the Parquet files (atomically), then empty the journals;
        returns the number of ledger records folded. Streams (see ``fold``): memory stays
        bounded however long the journals are."""
        ledger, attempts = self.out_dir / LEDGER_FILE, self.out_dir / ATTEMPTS_FILE
        if self._records.path.exists() and self._records.path.stat().st_size:
            self._check()  # never fold into a ledger damaged since it was opened
        folded = fold_latest(self._records.path, ledger, SCHEMA, self.fold_batch, _write_parquet)
        self._records.clear()
        fold_append(self._attempts.path, attempts, ATTEMPTS_SCHEMA, self.fold_batch, _write_parquet)
        self._attempts.clear()
        return folded

    def read(self, columns: list[str] | None = None) -> pa.Table | None:
        """The folded ledger (without journal records not yet compacted), or None if empty."""
        path = self.out_dir / LEDGER_FILE
        if not path.exists():
            return None
        try:
            return pq.read_table(
                path, columns=columns, schema=SCHEMA, page_checksum_verification=True
            )
        except (pa.ArrowInvalid, OSError) as e:
            raise LedgerDamaged(filesum.damaged_message(path, f"unreadable: {e}")) from None

    def iter_batches(self, columns: list[str]) -> Iterator[pa.RecordBatch]:
        """The folded ledger's columns, a row group at a time (nothing if there is none)."""
        path = self.out_dir / LEDGER_FILE
        if not path.exists():
            return
        try:
            source = pq.ParquetFile(path, memory_map=True, page_checksum_verification=True)
            yield from source.iter_batches(columns=columns, use_threads=False)
        except (pa.ArrowInvalid, OSError) as e:
            raise LedgerDamaged(filesum.damaged_message(path, f"unreadable: {e}")) from None

    def close(self) -> None:
        """Fold the journals into Parquet and release the directory.

        On a full or failing disk the journals stay as they are (durable) and the next run
        folds them.
        """
        try:
            try:
                self.compact()
            except OSError as e:
                if not is_disk_error(e):
                    raise
                self._records.close(remove=False)
                self._attempts.close(remove=False)
                return
            except UsageError as e:
                # Requests were sent: not a usage error (exit 2 means nothing was). The
                # journals are left in place, so every record of this run is kept for the next.
                self._records.close(remove=False)
                self._attempts.close(remove=False)
                raise LedgerNotFolded(
                    f"{e} (this run's records are kept in {self._records.path.name})"
                ) from None
            self._records.close(remove=True)
            self._attempts.close(remove=True)
        finally:
            with contextlib.suppress(OSError):  # a failing disk: records_since covers it
                self.provenance.sync()  # also the lines of rows whose records were refused
            self.provenance.close()
            self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
