"""Which request made each image: a small record per row, kept beside the ledger.

``DIR/provenance.journal`` holds a line per row whose images a run stored: the row id, the
fingerprint of the request that made the images, each image's path and SHA-256, and what the
answer was billed (its cost, the tier it was billed at, the batch job that answered it). A
row's line is appended before its images are written, so no image of this version is ever on
disk without it, nor without what it cost; a killed process loses nothing the page cache
holds (the next process fsyncs what it left before relying on it), and the ledger fsyncs the
journal once per group of records, before the records (one
fsync per group, not one per row: the per-row file and fsync it replaces cost ~10% of a
row's CPU, docs/benchmarks.md). A row's latest line is its record. With it, images the
ledger does not know (a crash before their record, a journal record damaged on disk, a
damaged ledger moved away) are adopted only when the row's current request is the one that
made them (an edited prompt's old image is never taken for the new one), and at the cost
they were billed, so the ledger's cost still equals the bill after a kill between an answer
and its record. ``verify --fix`` appends a record without a fingerprint for files it found
broken, so they are never adopted.

Versions before the journal kept a file per row, ``DIR/provenance/<name>``; they are still
read (a newer file than the row's journal line wins: an older version ran since), and a row's
file is removed once its line is durable, so a copy that resets file times cannot revive it.
Images from
before any records have none; ``records_since`` tells them from images whose record a power
cut lost (the kernel writes folders back in any order, and the journal's tail is fsynced only
with its group), which are never taken for a row by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.types import ImagePart
from pipeline.store.filesum import write_small
from pipeline.store.journal import Journal
from pipeline.store.journalindex import JournalIndex
from pipeline.store.storage import (
    TMP_DIR,
    StoredImage,
    fsync_dir,
    fsync_path,
    output_names,
    store_images,
)

JOURNAL_FILE = "provenance.journal"  # beside the ledger's journals, never among row names
PROVENANCE_DIR = "provenance"  # the per-row files of older versions, and the mark below
# In provenance/: made by the first run that keeps a record for every image (an older version's
# record file for a row named so too would only move the date on, and a row name never starts
# with "." unless its id does).
SINCE_FILE = ".records-since"


@dataclass(frozen=True, slots=True)
class Provenance:
    """What made one row's images."""

    row_id: str
    fingerprint: str | None  # None: rejected by verify --fix, never to be adopted
    files: tuple[tuple[str, str], ...]  # (path relative to the output directory, sha256)
    # What the answer was billed (None: a record from before costs were kept, or verify's).
    cost_usd: float | None = None
    tier: str | None = None  # the tier it was billed at ("batch" for a batch job's result)
    batch_job: str | None = None  # the batch job that answered it


class ProvenanceJournal:
    """``DIR/provenance.journal``, open for appending (on its first record) from any thread."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self._journal = Journal(out_dir / JOURNAL_FILE, durable=False, sole=True)
        self._lock = threading.Lock()  # rows are stored from the loop and from worker threads
        self._syncing = threading.Lock()  # one sync at a time (and no close during one)
        self._open = False
        self._unsynced: list[dict[str, Any]] = []  # appended since the last fsync began
        # Lines an fsync failed to make durable. Linux marks the pages it could not write clean,
        # so a second fsync "succeeds" without writing them: they are appended again instead.
        self._failed: list[dict[str, Any]] = []
        # The journal as an earlier process left it: a killed run's last lines may be in the
        # page cache only, and this run adopts images by them. Its first sync fsyncs them.
        self._inherited = True
        self._older: bool | None = None  # the folder has older versions' record files

    def _opened(self) -> None:
        """Open the journal (under ``_lock``), its name durable before any line relies on it:
        also a name a run made and was killed before it fsynced."""
        if not self._open:
            self._journal.open()  # a torn tail a kill left is cut off first
            try:
                fsync_dir(self.out_dir)
            except BaseException:
                self._journal.close(remove=False)
                raise
            self._open = True

    def add(self, stem: str, record: Provenance) -> None:
        """Append ``stem``'s record; durable at the next ``sync``. Raises ``OSError``."""
        line = _line(stem, record)
        with self._lock:
            self._opened()
            self._journal.append([line])  # all or nothing: a full disk leaves no torn line
            self._unsynced.append(line)

    def sync(self) -> None:
        """Make every record appended so far durable (the ledger's group commit calls this
        before the group's records, so no durable record outlives the provenance it needs),
        and those an earlier process left."""
        with self._syncing:
            with self._lock:
                if self._failed:
                    # In order with what came since: a row's latest line stays its record.
                    again = self._failed + self._unsynced
                    self._opened()
                    self._journal.append(again)  # raises: kept for the next sync
                    self._failed, self._unsynced = [], again
                if not self._unsynced and not self._inherited:
                    return
                lines, self._unsynced = self._unsynced, []
                inherited, self._inherited = self._inherited, False
                opened = self._open
            try:
                # Outside ``_lock``: rows' appends go on meanwhile (the fsync covers every line
                # written before it began, and a line written during it waits for the next).
                if opened:
                    self._journal.sync()
                elif self._journal.path.exists():  # only what an earlier process left
                    fsync_path(self._journal.path)
                    fsync_dir(self.out_dir)
            except OSError:
                with self._lock:
                    self._failed = lines
                    self._inherited = inherited
                raise
            self._retire_older_files(lines)

    def _retire_older_files(self, lines: list[dict[str, Any]]) -> None:
        """Remove an older version's record file for each row whose line is now durable: it
        is out of date, and a copy that does not keep file times (``cp -r``) would make it look
        newer than the line. Only in folders that have such files (one listing a process)."""
        if self._older is None:
            self._older = _has_older_files(self.out_dir)
        if self._older:
            for line in lines:
                with contextlib.suppress(OSError):  # none for this row (or a folder): fine
                    (folder(self.out_dir) / str(line["stem"])).unlink()

    def close(self) -> None:
        with self._syncing, self._lock:
            self._journal.close(remove=False)
            self._open = False


def _line(stem: str, record: Provenance) -> dict[str, Any]:
    data: dict[str, Any] = {"stem": stem, "row_id": record.row_id,
                            "fingerprint": record.fingerprint,
                            "files": [list(f) for f in record.files]}  # fmt: skip
    billed = {"cost_usd": record.cost_usd, "tier": record.tier, "batch_job": record.batch_job}
    data.update((key, value) for key, value in billed.items() if value is not None)
    data["at"] = time.time()  # against an older version's file for the same row, written since
    return data


def _record(data: dict[str, Any]) -> Provenance | None:
    """The record in a journal line or an older version's file (None: not one)."""
    try:
        files = tuple((str(rel), str(digest)) for rel, digest in data["files"])
        fingerprint = data["fingerprint"]
        cost, tier, batch_job = data.get("cost_usd"), data.get("tier"), data.get("batch_job")
        return Provenance(
            str(data["row_id"]),
            None if fingerprint is None else str(fingerprint),
            files,
            cost_usd=float(cost) if isinstance(cost, int | float) else None,
            tier=tier if isinstance(tier, str) else None,
            batch_job=batch_job if isinstance(batch_job, str) else None,
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


_index = JournalIndex("stem")  # the records of the last folder read, by stem


def _indexed(out_dir: Path, stem: str) -> tuple[Provenance, float] | None:
    """``stem``'s latest journal line: its record and when it was written."""
    # A line that does not parse as a record does not hide the row's earlier one.
    data = _index.get(out_dir / JOURNAL_FILE, stem, lambda line: _record(line) is not None)
    record = None if data is None else _record(data)
    if data is None or record is None:
        return None
    at = data.get("at")
    return record, float(at) if isinstance(at, int | float) else 0.0


def folder(out_dir: Path) -> Path:
    return out_dir / PROVENANCE_DIR


def any_records(out_dir: Path) -> bool:
    """Whether any row of ``out_dir`` has a record (a first run has none to look up)."""
    try:
        if (out_dir / JOURNAL_FILE).stat().st_size:
            return True
    except OSError:
        pass
    return _has_older_files(out_dir)


def _has_older_files(out_dir: Path) -> bool:
    """Whether ``provenance/`` holds an older version's record files (or their folders)."""
    try:
        with os.scandir(folder(out_dir)) as entries:
            return any(entry.name != SINCE_FILE for entry in entries)
    except OSError:
        return False


def records_since(out_dir: Path) -> float:
    """Since when (a file time) every image ``out_dir`` gets has its record written first:
    the time of a mark the first run of a version that knows it leaves (now, for a folder
    without one). An image without a record written since then had one, lost to a power cut;
    older ones may be from before records existed."""
    mark = folder(out_dir) / SINCE_FILE
    try:
        return mark.stat().st_mtime
    except FileNotFoundError:
        pass
    _make_folders(out_dir)
    write_small(mark, b"", out_dir / TMP_DIR)
    fsync_dir(mark.parent)  # durable before this run writes an image
    return mark.stat().st_mtime


def _make_folders(out_dir: Path) -> None:
    """``provenance/`` (durable in ``out_dir``) and the temp folder."""
    top = folder(out_dir)
    if not top.is_dir():
        top.mkdir(exist_ok=True)
        fsync_dir(out_dir)
    (out_dir / TMP_DIR).mkdir(exist_ok=True)


def read(out_dir: Path, stem: str) -> Provenance | None:
    """The record of the row whose file name stem is ``stem``; None if none (or unreadable)."""
    found = _indexed(out_dir, stem)
    older = folder(out_dir) / stem  # an older version's file for the row
    if found is not None:
        try:
            if older.stat().st_mtime <= found[1]:
                return found[0]
        except OSError:
            return found[0]
    try:
        data = json.loads(older.read_bytes())
    except (OSError, ValueError):
        return None
    return _record(data) if isinstance(data, dict) else None


def store(
    out_dir: Path,
    stem: str,
    images: tuple[ImagePart, ...],
    *,
    journal: ProvenanceJournal,
    row_id: str,
    fingerprint: str,
    cost_usd: float | None = None,
    tier: str | None = None,
    batch_job: str | None = None,
) -> list[StoredImage]:
    """``store_images``, with the record of the request that made them (and of what it was
    billed) written first."""
    names = output_names(stem, images)
    digests = [image.sha256 for image in images]
    files = tuple(zip(names, digests, strict=True))
    journal.add(stem, Provenance(row_id, fingerprint, files, cost_usd, tier, batch_job))
    return store_images(out_dir, stem, images)


def stems(rel: str) -> list[str]:
    """The stems a row whose image is ``rel`` may have (``<stem>_<n>.<ext>`` for several)."""
    name = rel.split("/", 1)[-1].rsplit(".", 1)[0]  # "images/" off; "category/sku" stays
    base, sep, n = name.rpartition("_")
    return [name, base] if sep and n.isdigit() and base else [name]


def of_file(out_dir: Path, rel: str) -> tuple[str, Provenance] | None:
    """The stem and record that list the image ``rel``, if any."""
    for stem in stems(rel):
        record = read(out_dir, stem)
        if record is not None and any(path == rel for path, _ in record.files):
            return stem, record
    return None


def reject(
    journal: ProvenanceJournal, row_id: str, rel_paths: list[str], digests: list[str]
) -> None:
    """Mark a row's files broken, never to be adopted (also images from before records);
    durable at the journal's next ``sync``."""
    if not rel_paths:
        return
    found = of_file(journal.out_dir, rel_paths[0])
    stem = found[0] if found else stems(rel_paths[0])[0 if len(rel_paths) == 1 else -1]
    files = found[1].files if found else tuple(zip(rel_paths, digests, strict=False))
    journal.add(stem, Provenance(row_id, None, files))
