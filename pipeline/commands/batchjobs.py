"""``nanobatch batch status DIR`` and ``nanobatch batch cancel DIR``: the batch jobs an output
directory holds at Google, read from its book (``store.batchbook``) and, with a key, from
Google itself; and cancelling them.

Both are safe beside a running run: the book is read without a lock, and a cancel is one
appended ``cancel_requested`` record per job (``batchbook.request_cancel``), written before the
cancel is sent, so a run that replays the book knows the jobs were cancelled on purpose.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio

from pipeline.commands.figures import duration
from pipeline.providers.batchapi import BatchCallError, BatchRoute, RemoteJob
from pipeline.providers.http import HttpClient
from pipeline.run.batch.calls import backoff_s
from pipeline.store.batchbook import BatchBook, request_cancel
from pipeline.store.bookjob import BookJob, Phase

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
# Attempts of one call to Google: waits of 5, 10, 20 and 40 s between them, or the server's own
# delay (a run's batch calls wait the same way, and go on longer).
TRIES = 5
# A longer delay than this is not waited out by a command someone is watching: the job is
# reported as not cancelled, with the command to try again.
MAX_WAIT_S = 120.0

# A job's state when Google was not asked (or cannot know it yet), from its last step.
_BY_PHASE = {
    Phase.PLANNED: "not sent yet",
    Phase.UPLOAD_STARTED: "uploading",
    Phase.UPLOADED: "uploaded, not created",
    Phase.CREATING: "being created",
    Phase.CREATED: "submitted",
    Phase.DOWNLOADED: "downloaded",
    Phase.FOLDED: "folded",
    Phase.CLEANED: "done",
}


@dataclass(frozen=True, slots=True)
class JobStatus:
    """One job of the book, with Google's view of it when asked."""

    job: str  # the local id, j0001
    display_name: str  # nanobatch-<tag>-<job>: how it is found at Google
    model: str
    batch: str | None  # batches/...
    state: str  # Google's now (PENDING, RUNNING, SUCCEEDED...), else the book's last word
    live: bool  # its rows are its own (not yet folded, not abandoned)
    rows: int
    counts: dict[str, int] | None  # Google's batchStats: requests, succeeded, failed, pending
    request_bytes: int
    results_bytes: int
    age_s: float | None  # since it was created at Google (else planned)
    cancel_requested: bool
    error: str | None  # why Google's view could not be read


@dataclass(frozen=True, slots=True)
class BatchStatus:
    """What ``nanobatch batch status`` reports; also its ``--format json``."""

    out_dir: str
    asked_google: bool
    jobs: list[JobStatus] = field(default_factory=list)

    @property
    def live(self) -> list[JobStatus]:
        return [job for job in self.jobs if job.live]

    def to_json(self) -> dict[str, Any]:
        live = self.live
        return asdict(self) | {"live_jobs": len(live), "live_rows": sum(j.rows for j in live)}


async def batch_status(
    out_dir: Path, route: BatchRoute | None, client: HttpClient | None, now: datetime
) -> BatchStatus:
    """Every job of ``out_dir``'s book; the live ones as Google sees them now when ``route``
    and ``client`` are given (None: the book only, nothing sent)."""
    jobs = BatchBook.load(out_dir)
    remote = await _remote(jobs, route, client) if route and client else {}
    found = [_status(job, remote.get(job.job_id), now) for job in jobs]
    return BatchStatus(str(out_dir), route is not None and client is not None, found)


async def _retried(call: Callable[[], Awaitable[T]], sleep: Sleep) -> T:
    """``call``, again after a transient failure or a rate limit, as long as a run's batch
    calls would wait (the server's own delay when it gives one), at most ``TRIES`` times: a
    cancel refused by a passing 503 would leave its job running, and billing."""
    attempt = 0
    while True:
        try:
            return await call()
        except BatchCallError as e:
            attempt += 1
            wait = backoff_s(e.outcome, attempt, wait_for_daily_quota=False)
            if wait is None or attempt >= TRIES or wait > MAX_WAIT_S:
                raise
            await sleep(wait)


async def _remote(
    jobs: list[BookJob], route: BatchRoute, client: HttpClient, sleep: Sleep = anyio.sleep
) -> dict[str, RemoteJob | str]:
    """Google's view of each live job (by batch name, or by display name when a crash lost
    the name), or why it could not be had."""
    seen: dict[str, RemoteJob | str] = {}
    listed: list[RemoteJob] | None = None
    for job in jobs:
        if not job.holds_rows or not job.exists_remotely:
            continue
        try:
            if (name := job.batch_name) is not None:
                seen[job.job_id] = await _retried(partial(route.get_job, client, name), sleep)
                continue
            if listed is None:
                listed = await _retried(partial(route.list_jobs, client), sleep)
            named = [r for r in listed if r.display_name == job.display_name]
            seen[job.job_id] = named[-1] if named else "not found at Google: never created"
        except BatchCallError as e:
            gone = e.outcome.reason == "NOT_FOUND"  # deleted there (its console, another tool)
            seen[job.job_id] = "not found at Google: deleted there" if gone else str(e)
    return seen


def _status(job: BookJob, remote: RemoteJob | str | None, now: datetime) -> JobStatus:
    counts, error, batch = None, None, job.batch_name
    if isinstance(remote, RemoteJob):
        state, batch = remote.state.value, remote.name
        c = remote.counts
        counts = {"requests": c.requests, "succeeded": c.succeeded, "failed": c.failed,
                  "pending": c.pending}  # fmt: skip
    elif job.abandoned is not None:
        state = f"abandoned ({job.abandoned})"
    elif job.state is not None and job.phase is Phase.ENDED:
        state = job.state
    else:
        state = _BY_PHASE.get(job.phase, job.phase.value)
        error = remote  # a str: why Google's view is missing
    since = job.created_at or job.planned_at
    return JobStatus(
        job=job.job_id,
        display_name=job.display_name,
        model=job.model,
        batch=batch,
        state=state,
        live=job.holds_rows,
        rows=len(job.rows),
        counts=counts,
        request_bytes=job.bytes,
        results_bytes=job.results_bytes,
        age_s=round((now - since).total_seconds(), 1) if since else None,
        cancel_requested=job.cancel_requested,
        error=error,
    )


def format_batch_status(status: BatchStatus) -> str:
    """The report for people."""
    if not status.jobs:
        return f"{status.out_dir}: no batch jobs (no run with --mode batch has planned one here)"
    live = status.live
    source = (
        "states as Google says now"
        if status.asked_google
        else ("states from the folder's journal: Google not asked (--offline, or no key)")
    )
    lines = [f"{status.out_dir}: {len(status.jobs)} batch jobs, {len(live)} live holding "
             f"{sum(j.rows for j in live)} rows; {source}"]  # fmt: skip
    for job in status.jobs:
        counts = ""
        if job.counts is not None:
            c = job.counts
            counts = (f", Google: {c['succeeded']} ok {c['failed']} failed {c['pending']} "
                      f"pending of {c['requests']}")  # fmt: skip
        sizes = f"{job.request_bytes / 1e6:,.1f} MB sent"
        if job.results_bytes:
            sizes += f", {job.results_bytes / 1e6:,.1f} MB back"
        lines.append(
            f"  {job.job} {job.batch or job.display_name} {job.model}: {job.state}, "
            f"{job.rows} rows{counts}, {sizes}, age {duration(job.age_s)}"
            + (", cancel requested" if job.cancel_requested else "")
            + (f" ({job.error})" if job.error else "")
        )
    return "\n".join(lines)


@dataclass(slots=True)
class Cancelled:
    """What ``nanobatch batch cancel`` did."""

    cancelled: list[str] = field(default_factory=list)  # batch names Google was asked to cancel
    rows: int = 0  # rows those jobs held
    not_created: list[str] = field(default_factory=list)  # job ids not (or no more) at Google
    failed: list[str] = field(default_factory=list)  # "j0001 (batches/x): why"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


async def batch_cancel(
    out_dir: Path, route: BatchRoute, client: HttpClient, now: datetime, sleep: Sleep = anyio.sleep
) -> Cancelled:
    """Cancel every live job of ``out_dir`` at Google; ``cancel_requested`` is journalled for
    each before its cancel is sent (jobs not created yet too: the book says it was asked, so
    no run creates them afterwards). A job whose create was journalled but whose name was not
    (a run died in between) is looked up by its display name, as a run's reconcile does."""
    jobs = [job for job in BatchBook.load(out_dir) if job.holds_rows and job.state is None]
    done = Cancelled()
    if not jobs:
        return done
    request_cancel(out_dir, [job.job_id for job in jobs], at=now)
    remote = await _remote(jobs, route, client, sleep)
    for job in jobs:
        seen = remote.get(job.job_id)
        if not isinstance(seen, RemoteJob):
            if seen is None or seen.startswith("not found"):
                done.not_created.append(job.job_id)
            else:
                done.failed.append(f"{job.job_id} ({job.batch_name}): {seen}")
            continue
        if seen.state.terminal:
            continue  # ended already: the next run folds it
        name = seen.name
        try:
            await _retried(partial(route.cancel_job, client, name), sleep)
        except BatchCallError as e:
            if await _ended(route, client, name):  # an earlier try reached it, its answer lost
                continue
            done.failed.append(f"{job.job_id} ({name}): {e}")
            continue
        done.cancelled.append(seen.name)
        done.rows += len(job.rows)
    return done


async def _ended(route: BatchRoute, client: HttpClient, name: str) -> bool:
    """Whether the job ``name`` is known to have ended (False if even that cannot be had)."""
    try:
        return (await route.get_job(client, name)).state.terminal
    except BatchCallError:
        return False


def format_cancelled(done: Cancelled, out_dir: Path) -> str:
    """What was cancelled, and what the next run will do."""
    if not (done.cancelled or done.not_created or done.failed):
        return f"{out_dir}: no live batch jobs to cancel"
    lines = []
    if done.cancelled:
        lines.append(
            f"asked Google to cancel {len(done.cancelled)} jobs holding {done.rows} rows "
            f"({', '.join(done.cancelled)}); they end as CANCELLED in Google's own time"
        )
    if done.not_created:
        never = ", ".join(done.not_created)
        lines.append(f"{len(done.not_created)} jobs are not at Google ({never}; never created, "
                     "or deleted there): "
                     "nothing to cancel there, and no run will create them; their rows count "
                     "as not yet sent, and the next run sends them in new jobs")  # fmt: skip
    lines += [f"could not cancel {what}" for what in done.failed]
    if done.failed:
        lines.append(f"Those jobs may still be running and billing: run `nanobatch batch cancel "
                     f"{out_dir}` again (the next `nanobatch run` on it also cancels "
                     "them)")  # fmt: skip
    lines.append(
        f"The next `nanobatch run` on {out_dir} folds what the cancelled jobs finished (whether "
        "Google bills those requests and lets their results be downloaded is unconfirmed) and "
        "leaves their other rows pending; a run after that sends them again (in new batch "
        "jobs, or one request each with --mode online)."
    )
    return "\n".join(lines)
