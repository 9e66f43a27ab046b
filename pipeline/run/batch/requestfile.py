"""A job's request file, written as a stream: one JSONL request line per row (the route's
``request_line``, key == row id) in ``DIR/.batch/<job>.requests.jsonl``, and beside it the
rows themselves (``<job>.rows.jsonl``: each row's ``Job``, its request's fingerprint and its
output size), which is what folding its results and resubmitting its rows read back, whatever
the manifest says by then. Both are fsynced before the job is planned in the book; a file a
crash left unplanned is removed by the next run (``stray_files``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from pipeline.core.types import Job, Tier
from pipeline.store.batchbook import BATCH_DIR, BOOK_FILE
from pipeline.store.bookjob import BookJob


@dataclass(frozen=True, slots=True)
class RowEntry:
    """One row of a job: what it asked for, as it was sent."""

    job: Job
    fingerprint: str
    size: str  # its effective output size (prices, sizing)


def request_path(job_id: str) -> str:
    return f"{BATCH_DIR}/{job_id}.requests.jsonl"


def rows_path(job_id: str) -> str:
    return f"{BATCH_DIR}/{job_id}.rows.jsonl"


def results_path(job_id: str) -> str:
    return f"{BATCH_DIR}/{job_id}.results.jsonl"


def bad_lines_path(job_id: str) -> str:
    return f"{BATCH_DIR}/{job_id}.bad.jsonl"


class RequestFile:
    """A request file being written for one job of one model."""

    def __init__(self, out_dir: Path, job_id: str, model: str, round_: int = 0) -> None:
        self.out_dir = out_dir
        self.job_id = job_id
        self.model = model
        self.round = round_  # how many times these rows were submitted before
        (out_dir / BATCH_DIR).mkdir(parents=True, exist_ok=True)
        self._requests: IO[bytes] = open(out_dir / request_path(job_id), "wb")  # noqa: SIM115
        self._rows: IO[bytes] = open(out_dir / rows_path(job_id), "wb")  # noqa: SIM115
        self._sha = hashlib.sha256()
        self.size = 0  # bytes of request lines
        self.output = 0  # estimated bytes of its results
        self.reserved = 0.0  # worst case at the batch price, held under the cap
        self.rows: list[str] = []  # row ids in key order

    def add(self, entry: RowEntry, line: bytes, output: int, reserved: float) -> None:
        self._requests.write(line)
        self._sha.update(line)
        self._rows.write(_encode(entry))
        self.size += len(line)
        self.output += output
        self.reserved += reserved
        self.rows.append(entry.job.row_id)

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    def close(self) -> None:
        """Make both files durable (the book names them next)."""
        for f in (self._requests, self._rows):
            f.flush()
            os.fsync(f.fileno())
            f.close()

    def discard(self) -> None:
        """Drop a file that will not become a job (a drain): its rows stay pending."""
        for f in (self._requests, self._rows):
            f.close()
        for rel in (request_path(self.job_id), rows_path(self.job_id)):
            (self.out_dir / rel).unlink(missing_ok=True)


def _encode(entry: RowEntry) -> bytes:
    row = asdict(entry.job)
    row["images"] = list(entry.job.images)
    row["tier"] = entry.job.tier.value
    data = {"row": row, "fingerprint": entry.fingerprint, "size": entry.size}
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _decode(line: bytes) -> RowEntry:
    data: dict[str, Any] = json.loads(line)
    row = data["row"]
    row["images"] = tuple(row["images"])
    row["tier"] = Tier(row["tier"])
    return RowEntry(Job(**row), str(data["fingerprint"]), str(data["size"]))


def read_rows(out_dir: Path, job_id: str) -> Iterator[RowEntry]:
    """A job's rows as written (nothing if its file is gone)."""
    path = out_dir / rows_path(job_id)
    if not path.exists():
        return
    with open(path, "rb") as f:
        for line in f:
            if line.endswith(b"\n"):
                yield _decode(line)


def stray_files(out_dir: Path, jobs: list[BookJob]) -> list[Path]:
    """Files in ``DIR/.batch`` no job of the book still needs (a crash mid-write left them,
    or their job is done with): removed by the caller. Bad-line files are kept for people."""
    keep = {BOOK_FILE}
    for job in jobs:
        if job.cleaned:
            continue
        keep |= {Path(p).name for p in (request_path(job.job_id), rows_path(job.job_id))}
        keep.add(Path(results_path(job.job_id)).name)
    folder = out_dir / BATCH_DIR
    if not folder.is_dir():
        return []
    return [
        p
        for p in folder.iterdir()
        if p.is_file() and p.name not in keep and not p.name.endswith((".bad.jsonl", ".damaged"))
    ]


def remove_stray_files(out_dir: Path, jobs: list[BookJob]) -> None:
    for path in stray_files(out_dir, jobs):
        path.unlink(missing_ok=True)


def remove_job_files(out_dir: Path, job_id: str) -> None:
    """A cleaned job's request, rows and results files (its rows are in the ledger)."""
    for rel in (request_path(job_id), rows_path(job_id), results_path(job_id)):
        (out_dir / rel).unlink(missing_ok=True)
