"""One batch job as the book knows it (``BookJob``), and what each of the book's records does to
it (``apply``): a record's ``kind`` is the job's step (``Phase``) or the cancel flag, its fields
what that step learned (a file's name at Google, the job's batch name, its terminal state...).
Replaying a job's records in order rebuilds it; a record applied twice changes nothing.
``batchbook`` journals the records and replays them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Phase(StrEnum):
    """A job's last recorded step (the records' ``kind``, in the order they happen)."""

    PLANNED = "planned"
    UPLOAD_STARTED = "upload_started"
    UPLOADED = "uploaded"
    CREATING = "creating"
    CREATED = "created"
    ENDED = "ended"
    DOWNLOADED = "downloaded"
    FOLDED = "folded"
    CLEANED = "cleaned"
    ABANDONED = "abandoned"


CANCEL_REQUESTED = "cancel_requested"  # a flag on the job, not a step of its own


@dataclass(slots=True)
class BookJob:
    """One job as the book knows it (the read API of ``batch status`` / ``batch cancel``)."""

    job_id: str  # "j0001": local, unique in this directory
    display_name: str  # "nanobatch-<tag>-<job id>": how it is found at Google
    model: str = ""
    request_file: str | None = None  # relative to the output directory
    bytes: int = 0  # of the request file
    sha256: str | None = None
    requests: int = 0
    reserved_usd: float = 0.0  # its worst case at the batch price, held under the cap
    rows: list[str] = field(default_factory=list)  # row ids in key order
    round: int = 0  # 0: first submission of these rows; n: their n-th resubmission
    phase: Phase = Phase.PLANNED
    session_url: str | None = field(default=None, repr=False)  # a credential
    file_name: str | None = None  # "files/..." the uploaded request file
    batch_name: str | None = None  # "batches/..."
    state: str | None = None  # the terminal state it ended in
    results_file: str | None = None  # relative to the output directory
    results_bytes: int = 0
    planned_at: datetime | None = None
    created_at: datetime | None = None
    folded: bool = False
    cleaned: bool = False
    cancel_requested: bool = False
    abandoned: str | None = None  # why its rows were taken back
    incomplete: bool = False  # its ``planned`` record was lost to damage

    @property
    def holds_rows(self) -> bool:
        """Its rows are its own: not planned again (neither folded nor given up)."""
        return not self.folded and self.abandoned is None

    @property
    def exists_remotely(self) -> bool:
        """It may exist as a job at Google (a create was sent, or it is known to have been)."""
        return self.batch_name is not None or self.phase is Phase.CREATING


def stamp(value: Any) -> datetime | None:
    """A record's time (ISO 8601 text, or a datetime not yet written), None if unreadable."""
    if isinstance(value, datetime):  # a record applied as it is written, before any replay
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def apply(job: BookJob, record: dict[str, Any]) -> None:
    """One record onto its job (idempotent: replaying a record twice changes nothing)."""
    kind = record.get("kind")
    at = stamp(record.get("at"))
    if kind == CANCEL_REQUESTED:
        job.cancel_requested = True
        return
    try:
        phase = Phase(str(kind))
    except ValueError:
        return  # a kind from a newer version: its fields are not ours to guess
    job.phase = phase
    match phase:
        case Phase.PLANNED:
            job.incomplete = False
            job.model = str(record.get("model") or "")
            job.request_file = record.get("file")
            job.bytes = int(record.get("bytes") or 0)
            job.sha256 = record.get("sha256")
            job.requests = int(record.get("requests") or 0)
            job.reserved_usd = float(record.get("reserved_usd") or 0.0)
            job.rows = [str(r) for r in record.get("rows") or []]
            job.round = int(record.get("round") or 0)
            job.planned_at = at
        case Phase.UPLOAD_STARTED:
            job.session_url = record.get("session_url")
        case Phase.UPLOADED:
            job.file_name = record.get("file_name")
        case Phase.CREATED:
            job.batch_name = record.get("batch_name")
            job.created_at = stamp(record.get("created")) or at
        case Phase.ENDED:
            job.state = record.get("state")
        case Phase.DOWNLOADED:
            job.results_file = record.get("path")
            job.results_bytes = int(record.get("bytes") or 0)
        case Phase.FOLDED:
            job.folded = True
        case Phase.CLEANED:
            job.cleaned = True
        case Phase.ABANDONED:
            job.abandoned = str(record.get("reason") or "abandoned")
        case _:
            pass
