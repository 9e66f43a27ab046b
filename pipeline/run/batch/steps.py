"""What every step of a run's batch jobs shares: the run's services, the route and its client,
the book each step is journalled in, and the call policy (``calls``). The submitter and the
folder are both made of it; ``journal`` writes one step to the book."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import anyio

from pipeline.providers.batchapi import BatchRoute
from pipeline.providers.http import HttpClient
from pipeline.run.batch.calls import Calls
from pipeline.run.executor import RunServices
from pipeline.store.batchbook import BatchBook
from pipeline.store.bookjob import BookJob, Phase


@dataclass
class JobSteps:
    """The parts a step at Google needs, one set per run."""

    services: RunServices
    route: BatchRoute
    client: HttpClient
    book: BatchBook
    calls: Calls

    @property
    def out_dir(self) -> Path:
        return self.services.config.out_dir

    async def journal(self, job: BookJob, kind: Phase | str, **fields: object) -> None:
        """Journal one step of ``job`` (durably, in a thread: an fsync)."""
        now = self.services.clock.now()
        await anyio.to_thread.run_sync(lambda: self.book.record(job.job_id, kind, at=now, **fields))
