"""The batch intent journal: what this output directory asked Google to hold, written before
each action there and again after it, so that a crash at any point can be reconciled.

``DIR/.batch/book.jsonl`` is a durable ``Journal`` (a CRC per line, fsync per append). Each
line is one record of one job (``kind`` below, ``job`` its local id). Replaying the lines in
order gives each job's last phase and everything needed to find it again at the server:

    planned         the request file is written: model, file, bytes, sha256, request count,
                    the reserved worst case (USD), the row ids in key order (key == row id),
                    and how many times these rows were resubmitted before (``round``)
    upload_started  a resumable upload session is open (its URL: a credential, never shown)
    uploaded        the request file is a file at Google (its name)
    creating        the job is about to be created (a crash now: look for it by display name)
    created         the job exists (its batch name)
    ended           the job reached a terminal state (its state)
    downloaded      its results are on disk (path, bytes)
    folded          its rows are in the ledger
    cleaned         its files at Google are deleted
    cancel_requested  someone asked for it to be cancelled (``nanobatch batch cancel``)
    abandoned       its rows are no longer its own (reason): they go back to pending / online

The book has one run-unique ``tag`` (its first line, and repeated in every record since, so
that a first line damaged on disk does not lose it); a job's display name at Google is
``nanobatch-<tag>-<job id>``, which is how a job whose ``created`` record a crash lost is
found again (never created twice). A book that lost its tag (from before the tag was repeated)
while a job may exist at Google under the lost name is refused (``BookTagLost``): a new tag
would create that job a second time, billed twice. The book also knows its folder (the
inode): a book opened in another folder (a copy, a move to another disk, a restore) takes a
new tag there, so the jobs each folder plans from then on have names the other never looks for
or deletes. Every record repeats the book's tag and folder (the latest wins, so a damaged
opening line loses neither) and its job's name, so a job keeps the name it was planned under
whatever tag the book has since and whichever of its lines survive. A torn last line (a crash
mid-append) is dropped; a damaged line is skipped and counted (``damaged``), the lines after it
still count: a job whose ``planned`` line is lost still appears (``incomplete``), from its later
records.
"""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from pipeline.core.errors import UsageError
from pipeline.store.bookjob import CANCEL_REQUESTED, BookJob, Phase, apply
from pipeline.store.journal import Damaged, Journal, append_shared, scan_journal

BATCH_DIR = ".batch"
BOOK_FILE = "book.jsonl"
DISPLAY_PREFIX = "nanobatch-"
_OPENED = "opened"  # the book's first line (and a copy's): its tag and folder
_RENAMED = "renamed"  # a job named again under a copy's tag, before anything of it was sent

log = structlog.get_logger("nanobatch")


class BookTagLost(UsageError):
    """The book's tag is lost while a job may exist at Google under a name made from it."""


class BatchBook:
    """The book of one output directory: replayed on open, appended before and after actions."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.path = out_dir / BATCH_DIR / BOOK_FILE
        self.tag = ""
        self.folder: int | None = None  # the inode of the folder the book was last opened in
        self.jobs: dict[str, BookJob] = {}  # by job id, in the order they were planned
        self.damaged = 0  # lines lost to damage on disk
        self._journal: Journal | None = None

    @classmethod
    def load(cls, out_dir: Path) -> list[BookJob]:
        """Every job of ``out_dir``'s book, read-only (no lock: a run may be appending)."""
        book = cls(out_dir)
        book.replay()
        return list(book.jobs.values())

    def replay(self) -> None:
        """Read the book from disk (a torn last line dropped, damaged lines skipped)."""
        self.jobs, self.damaged = {}, 0
        first_tags: dict[str, str] = {}  # the tag of each job's first record read
        for record in scan_journal(self.path):
            if isinstance(record, Damaged):
                self.damaged += 1
                continue
            tag, folder = str(record.get("tag") or ""), record.get("folder")
            if tag and isinstance(folder, int):
                self.tag, self.folder = tag, folder  # the latest: a copy's new tag too
            elif record.get("kind") == _OPENED:
                self.tag = tag or self.tag  # an opening from before folders were named
            else:
                self.tag = self.tag or tag  # any record's, when the opening line was lost
            job_id = record.get("job")
            if record.get("kind") == _OPENED or not isinstance(job_id, str):
                continue
            job = self.jobs.get(job_id)
            if job is None:
                job = BookJob(job_id, "", incomplete=record.get("kind") != Phase.PLANNED.value)
                self.jobs[job_id] = job
                first_tags[job_id] = tag
            if isinstance(name := record.get("name"), str) and name:
                job.display_name = name  # the latest: a job renamed before anything was sent
            apply(job, record)
        for job in self.jobs.values():
            if not job.display_name:  # no record names it: from a version before they did
                job.display_name = self.display_name(job.job_id, first_tags[job.job_id])

    def refresh_cancels(self) -> list[BookJob]:
        """Cancels another process asked for since (``batch cancel`` beside a running run):
        the jobs newly flagged. The jobs already known keep their objects."""
        flagged = []
        for record in scan_journal(self.path):
            if isinstance(record, Damaged) or record.get("kind") != CANCEL_REQUESTED:
                continue
            job = self.jobs.get(str(record.get("job")))
            if job is not None and not job.cancel_requested:
                job.cancel_requested = True
                flagged.append(job)
        return flagged

    def display_name(self, job_id: str, tag: str = "") -> str:
        return f"{DISPLAY_PREFIX}{tag or self.tag}-{job_id}"

    def open(self) -> None:
        """Replay the book and open it for appending (a new book gets its tag first)."""
        (self.out_dir / BATCH_DIR).mkdir(parents=True, exist_ok=True)
        self.replay()
        self._journal = Journal(self.path, durable=True)
        self._journal.open()
        if not self.tag:
            if lost := [job.job_id for job in self.jobs.values() if job.phase is Phase.CREATING]:
                self.close()
                raise BookTagLost(
                    f"{self.path} lost its first line to damage on disk, and with it the tag in "
                    f"the names of its jobs at Google: job {', '.join(lost)} may have been created "
                    "there under a name this run cannot look for, and would be created again "
                    "(billed twice). Nothing was sent. Check the jobs at Google (their names "
                    "start with nanobatch-), then move the book away (mv .batch .batch.damaged) "
                    "and rerun: rows a job there answers are then paid for again"
                )
            self.tag = secrets.token_hex(4)
            self._opened()
            for job in self.jobs.values():  # only an incomplete book can have jobs but no tag
                job.display_name = self.display_name(job.job_id)
            return
        if self.folder is None:  # a book from before folders were named: this one is its own
            self._opened()
        elif self.folder != self._here():
            # Copied here (or moved from another disk): the folder it came from may still
            # plan jobs with the same ids under the old tag. Jobs with something at Google
            # keep their names (both folders hold them); the others are named again.
            old, self.tag = self.tag, secrets.token_hex(4)
            self._opened()
            for job in self.jobs.values():
                if job.phase is Phase.PLANNED and not job.incomplete:
                    # Nothing of it at Google yet: under the new tag, so that each folder's
                    # job for these rows is its own (the other folder plans one too).
                    job.display_name = self.display_name(job.job_id)
                    self.record(job.job_id, _RENAMED)
            shared = [job.job_id for job in self.jobs.values() if job.holds_rows
                      and job.display_name != self.display_name(job.job_id)]  # fmt: skip
            log.warning("batch.book_copied", tag=self.tag, was=old, shared_jobs=shared,
                        meaning="this folder's book was made in another folder: jobs planned "
                        "here from now on get names of their own")  # fmt: skip

    def _here(self) -> int:
        return os.stat(self.out_dir).st_ino

    def _opened(self) -> None:
        """Append the book's opening line: its tag and the folder it is open in."""
        assert self._journal is not None
        self.folder = self._here()
        record = {"kind": _OPENED, "tag": self.tag, "folder": self.folder, "at": datetime.now(UTC)}
        self._journal.append([record])

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close(remove=False)
            self._journal = None

    def next_job_id(self) -> str:
        numbers = [int(j[1:]) for j in self.jobs if j[1:].isdigit()]
        return f"j{max(numbers, default=0) + 1:04d}"

    def live(self) -> list[BookJob]:
        """Jobs that still hold their rows, in the order they were planned."""
        return [job for job in self.jobs.values() if job.holds_rows]

    def plan(
        self,
        *,
        model: str,
        request_file: str,
        size: int,
        sha256: str,
        rows: list[str],
        reserved_usd: float,
        round: int = 0,
        at: datetime | None = None,
        job_id: str | None = None,
    ) -> BookJob:
        """Record a new job (its request file written): the first record of every job."""
        job_id = job_id or self.next_job_id()
        return self.record(
            job_id,
            Phase.PLANNED,
            at=at,
            model=model,
            file=request_file,
            bytes=size,
            sha256=sha256,
            requests=len(rows),
            reserved_usd=reserved_usd,
            rows=rows,
            round=round,
        )

    def record(
        self, job_id: str, kind: Phase | str, *, at: datetime | None = None, **fields: Any
    ) -> BookJob:
        """Append one record (durably) and apply it; raises ``OSError`` if it cannot be written,
        in which case the action it announces must not be taken."""
        assert self._journal is not None, "book not open"
        job = self.jobs.get(job_id)
        name = job.display_name if job is not None else self.display_name(job_id)
        record = {"kind": str(kind), "job": job_id, "at": at or datetime.now(UTC), **fields,
                  "tag": self.tag, "folder": self.folder, "name": name}  # fmt: skip
        self._journal.append([record])
        if job is None:
            job = BookJob(job_id, name, incomplete=str(kind) != Phase.PLANNED.value)
            self.jobs[job_id] = job
        apply(job, record)
        return job


def held_rows(out_dir: Path) -> frozenset[str]:
    """The rows the live jobs of ``out_dir``'s book hold (none without a book): their jobs'
    results record them, so a run does not adopt their images from disk instead."""
    if not (out_dir / BATCH_DIR / BOOK_FILE).exists():
        return frozenset()
    return frozenset(row for job in BatchBook.load(out_dir) if job.holds_rows for row in job.rows)


def request_cancel(out_dir: Path, job_ids: list[str], *, at: datetime | None = None) -> None:
    """Append ``cancel_requested`` for ``job_ids`` from another process (``batch cancel``),
    while a run may hold the book open: one appended write, nothing truncated
    (``journal.append_shared``)."""
    stamp = at or datetime.now(UTC)
    records = [{"kind": CANCEL_REQUESTED, "job": j, "at": stamp} for j in job_ids]
    append_shared(out_dir / BATCH_DIR / BOOK_FILE, records)
