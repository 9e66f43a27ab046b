"""What every step of a run's batch jobs shares: the run's services, the route and its client,
the book each step is journalled in, and the call policy (``calls``). The submitter and the
folder are both made of it; ``journal`` writes one step to the book, ``look_up`` asks Google for
a job (a job it no longer knows reads as gone), ``cancel`` sends a job's cancel (once per run)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path

import anyio
import structlog

from pipeline.providers.batchapi import BatchCallError, BatchCounts, BatchRoute, JobState, RemoteJob
from pipeline.providers.http import HttpClient
from pipeline.run.batch.calls import Calls
from pipeline.run.executor import RunServices
from pipeline.store.batchbook import BatchBook
from pipeline.store.bookjob import BookJob, Phase

log = structlog.get_logger("nanobatch")

GONE = "NOT_FOUND"  # the reason of a call about a job or file the server does not know
GONE_AFTER = timedelta(minutes=10)  # a job this old answering 404 was deleted, not delayed


@dataclass
class JobSteps:
    """The parts a step at Google needs, one set per run."""

    services: RunServices
    route: BatchRoute
    client: HttpClient
    book: BatchBook
    calls: Calls
    cancelled: set[str] = field(default_factory=set, kw_only=True)  # jobs this run cancelled
    reuploaded: set[str] = field(default_factory=set, kw_only=True)  # request files sent again

    @property
    def out_dir(self) -> Path:
        return self.services.config.out_dir

    async def journal(self, job: BookJob, kind: Phase | str, **fields: object) -> None:
        """Journal one step of ``job`` (durably, in a thread: an fsync)."""
        now = self.services.clock.now()
        await anyio.to_thread.run_sync(lambda: self.book.record(job.job_id, kind, at=now, **fields))

    async def cancel(self, job: BookJob, name: str) -> None:
        """Ask Google to cancel ``job`` (batch ``name``), once per run: a job may show its old
        state for a while after a cancel, and each poll would otherwise send it again."""
        if job.job_id in self.cancelled:
            return
        self.cancelled.add(job.job_id)
        try:
            await self.calls.do(partial(self.route.cancel_job, self.client, name), refusal_ok=True)
        except BatchCallError as e:
            # Refused (it ended meanwhile, or was cancelled already): the run goes on, and polls
            # it as any other job; what it finished is folded, nothing paid for is lost.
            log.warning("batch.cancel_refused", job=job.job_id, batch=name,
                        reason=e.outcome.reason, message=e.outcome.message)  # fmt: skip

    async def look_up(self, job: BookJob, name: str) -> RemoteJob:
        """Google's view of ``job`` (batch ``name``). A job Google no longer knows (deleted in
        its console or by another tool) reads as ended with no results (the executor keeps it
        as ``GONE``): its rows are handed on, instead of every later run stopping on the same
        404. Not within ``GONE_AFTER`` of its creation: a 404 that early stops the run as any
        refusal does, rather than risk sending a live job's rows a second time."""
        try:
            return await self.calls.do(
                partial(self.route.get_job, self.client, name), refusal_ok=True
            )
        except BatchCallError as e:
            created = job.created_at or job.planned_at
            recent = created is None or self.services.clock.now() - created < GONE_AFTER
            if e.outcome.reason != GONE or recent:
                self.calls.stop(e)
        log.warning("batch.job_gone", job=job.job_id, batch=name, rows=len(job.rows),
                    meaning="not at Google any more: its rows count as possibly billed and "
                    "are sent again")  # fmt: skip
        return RemoteJob(name, job.display_name, job.model, JobState.FAILED, GONE, BatchCounts(),
                         output_file=None, inline_output=False, error="not found at Google",
                         created=None)  # fmt: skip
