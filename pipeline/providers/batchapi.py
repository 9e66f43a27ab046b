"""The batch seam: what a route with a Batch API must offer so that the batch executor can send
rows as jobs without knowing the protocol (the batch counterpart of ``providers.base``).

Plain values and one Protocol; no HTTP here. The executor (``run.batch``) writes request lines
with ``request_line``, uploads the file, creates a job, polls it, downloads its results to disk
and reads them back one line at a time with ``read_result_line``. Everything on the far side
(URLs, upload sessions, Google's Operation JSON, where the result file lives) is the route's.

    rows ─request_line─> file ─upload─> RemoteFile ─create_job─> RemoteJob ─get_job─> ... ─┐
    ledger <─fold─ ResultLine <─read_result_line─ file on disk <─download_results─────────┘

Failures of these calls are values inside ``BatchCallError``: the ``Outcome`` says what kind
of failure it was (transient, rate limit, run error...), classified exactly like an online
answer, so the executor applies the same retry and quota policy. A failed line in a result
file is not an exception either: it is a ``ResultLine`` with a failed outcome.

Secrets: an upload session URL is a credential (whoever holds it may write the file); it is
stored in the intent journal so an upload can resume, but never logged or put in a message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pipeline.core.types import Outcome
from pipeline.providers.base import PreparedRequest

if TYPE_CHECKING:
    from pipeline.providers.http import HttpClient


class JobState(StrEnum):
    """A job's state: the wire's ``BATCH_STATE_*`` (or ``JOB_STATE_*``) without its prefix.
    Any state this client does not know is ``UNKNOWN``: treated as not finished (kept polling)
    and logged with the ``wire_state`` the server sent."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    UNKNOWN = "UNKNOWN"

    @property
    def terminal(self) -> bool:
        """The job will not change any more: its results (if any) can be fetched and folded."""
        return self in _TERMINAL


_TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED})


@dataclass(frozen=True, slots=True)
class BatchCounts:
    """Google's ``batchStats`` (int64 strings on the wire; a zero count is left out, read 0)."""

    requests: int = 0
    succeeded: int = 0
    failed: int = 0
    pending: int = 0


@dataclass(frozen=True, slots=True)
class RemoteJob:
    """A batch job as the server described it in one answer."""

    name: str  # "batches/...": the id every later call names
    display_name: str  # ours: "nanobatch-<tag>-<job id>", how a crashed run finds it again
    model: str  # without the "models/" prefix
    state: JobState
    wire_state: str  # the state as the server spelt it (worth logging when UNKNOWN)
    counts: BatchCounts
    output_file: str | None  # "files/..." of a job fed from a file, once it has results
    inline_output: bool  # the results are inside the job (an inline job): download_results
    error: str | None  # why the job failed, when the server says
    created: str | None  # RFC 3339, as the server said


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """A file in the route's Files API (an uploaded request file, or a job's result file)."""

    name: str  # "files/..."
    display_name: str
    size_bytes: int
    state: str  # "ACTIVE", "PROCESSING", "FAILED", as the server spelt it ("" if unsaid)
    download_uri: str | None  # where its bytes can be fetched, when the server says


@dataclass(frozen=True, slots=True)
class ResultLine:
    """One line of a result file, read."""

    key: str | None  # the request's key (the row id); None: no key could be read from the line
    outcome: Outcome  # through the route's online classifier: images inside, refusals, errors


class BatchCallError(Exception):
    """A Files or Batch API call failed. ``outcome`` classifies it as an online answer would
    be (``kind`` transient, rate limit, row/model/run error; ``reason``; ``retry_after_s``), so
    the caller applies the same retry and quota policy. The message never holds a key or a
    session URL."""

    def __init__(self, outcome: Outcome, call: str) -> None:
        self.outcome = outcome
        self.call = call  # which call failed: "upload", "create_job", "get_job"...
        detail = f": {outcome.message}" if outcome.message else ""
        super().__init__(f"{call} failed: {outcome.reason}{detail}")


class ResultsNotReady(Exception):
    """The job SUCCEEDED but its results cannot be read yet (the file is not there, or not
    downloadable): poll again later. Not a failure of the job."""


OnProgress = Callable[[int], None]  # a count of bytes: acknowledged offset, bytes downloaded


class BatchRoute(Protocol):
    """A route's Batch and Files API. Stateless apart from its provider's ``Auth``: one per run,
    shared; every call takes the ``HttpClient`` to send through. Every call raises
    ``BatchCallError`` for a failure the server or the network reported."""

    async def start_upload(self, client: HttpClient, *, size: int, display_name: str) -> str:
        """Open a resumable upload session for a JSONL file of ``size`` bytes; its session
        URL (a credential: journal it, never log it)."""
        ...

    async def send_upload(
        self,
        client: HttpClient,
        session_url: str,
        path: Path,
        *,
        on_offset: OnProgress | None = None,
        display_name: str | None = None,
    ) -> RemoteFile:
        """Send ``path`` through the session: ask the session for its acknowledged offset
        first (a resumed upload sends only the rest; a finished one sends nothing), then the
        rest in 8 MiB chunks, the last one finalizing. After a failed chunk the offset is asked
        again and sending resumes there (bounded attempts, then ``BatchCallError``).
        ``on_offset`` hears each acknowledged offset. ``display_name`` (the one given to
        ``start_upload``) finds the file when the session is finalized already but its answer
        was lost (a crash after the last chunk): a finished file is never uploaded again.
        Memory does not depend on the file's size. The file in the Files API, once finalized."""
        ...

    async def upload_offset(self, client: HttpClient, session_url: str) -> int | None:
        """The session's acknowledged offset; None when the session is gone (expired, or
        unknown to the server): the upload must start again with a new session."""
        ...

    async def list_files(self, client: HttpClient) -> list[RemoteFile]:
        """Every file in the Files API (all pages)."""
        ...

    async def get_file(self, client: HttpClient, name: str) -> RemoteFile | None:
        """One file; None when the server does not know it."""
        ...

    async def delete_file(self, client: HttpClient, name: str) -> None:
        """Delete a file; one that is gone already is fine."""
        ...

    async def create_job(
        self,
        client: HttpClient,
        *,
        model: str,
        display_name: str,
        file_name: str | None = None,
        inline: Sequence[bytes] | None = None,
    ) -> RemoteJob:
        """Create a job from an uploaded file (``file_name``) or from inline request lines
        (``inline``: lines made by ``request_line``, small jobs only); exactly one of the two.
        Not idempotent at the server: the caller journals its intent first and, when the
        answer is lost, looks the job up by display name before creating again."""
        ...

    async def get_job(self, client: HttpClient, name: str) -> RemoteJob:
        """The job as it is now."""
        ...

    async def list_jobs(self, client: HttpClient) -> list[RemoteJob]:
        """Every job the key can see (all pages)."""
        ...

    async def cancel_job(self, client: HttpClient, name: str) -> None:
        """Ask the server to cancel a job (it becomes CANCELLED in its own time)."""
        ...

    async def delete_job(self, client: HttpClient, name: str) -> None:
        """Delete a finished job; one that is gone already is fine."""
        ...

    async def download_results(
        self,
        client: HttpClient,
        job: RemoteJob,
        dest: Path,
        *,
        on_bytes: OnProgress | None = None,
    ) -> int:
        """Stream a finished job's results to ``dest`` as JSONL (inline results are written
        out as lines too); a partial ``dest`` from an earlier attempt resumes with a Range
        request where the server allows. By URL when the Files API rejects the file's id; a
        redirect to another host is followed with every credential stripped. Raises
        ``ResultsNotReady`` when the job SUCCEEDED but its results cannot be read yet.
        ``on_bytes`` hears the size of ``dest`` as it grows. The size of ``dest``."""
        ...

    def request_line(self, key: str, request: PreparedRequest) -> bytes:
        """One JSONL line for a request file (ending in ``b"\\n"``): ``key`` and the body the
        provider prepared for the online call, spliced in without re-encoding it."""
        ...

    def read_result_line(self, line: bytes) -> ResultLine:
        """One result line read through the same classifier as online answers. Total: a line
        that cannot be parsed, or has no key, is ``ResultLine(None, <a failed outcome>)``."""
        ...
