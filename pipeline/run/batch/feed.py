"""The job stream into request files: each row prepared through the provider (in a thread),
its worst case at the batch price reserved under the cap, its request line written into the
open file of its model, and a file cut into a job of its own when the next row would not fit
(``sizing.Cut``). A cut file is planned in the book and handed on to be submitted; rows a live
job already holds are not written again (they are that job's: only noted as pending here).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

import anyio

from pipeline.core.models import effective_size
from pipeline.core.types import InvalidRow, Job, Tier
from pipeline.plan.done import DoneRows
from pipeline.plan.sources import SourceImageError
from pipeline.providers.base import Provider
from pipeline.providers.batchapi import BatchRoute
from pipeline.run.batch.phases import checkpoint
from pipeline.run.batch.requestfile import RequestFile, RowEntry, read_rows, request_path
from pipeline.run.batch.sizing import Cut, result_bytes
from pipeline.run.control import Halt
from pipeline.run.executor import Jobs, Records, RunServices
from pipeline.store.batchbook import BatchBook
from pipeline.store.bookjob import BookJob
from pipeline.store.records import invalid_record

Submit = Callable[[BookJob], Awaitable[None]]  # starts a planned job on its way


class Rows:
    """Which live job holds each row, and which rows this run has been given to finish."""

    def __init__(self, book: BatchBook) -> None:
        self.owner: dict[str, str] = {}  # row id -> job id (a later job wins: a resubmission)
        self.pending: set[str] = set()  # rows of this run's plan that live jobs hold
        self.feed_done = anyio.Event()  # every row of the plan has been seen
        for job in book.live():
            if job.incomplete and not job.rows:
                # Its planned record was lost to damage: its rows are still in its own file,
                # and they are its own (planned again, they could be billed twice).
                job.rows = [e.job.row_id for e in read_rows(book.out_dir, job.job_id)]
            self.hold(job)

    def hold(self, job: BookJob) -> None:
        for row_id in job.rows:
            self.owner[row_id] = job.job_id

    def release(self, job: BookJob) -> None:
        """``job`` gave its rows up before it was created: they are rows not yet sent."""
        for row_id in job.rows:
            if self.owner.get(row_id) == job.job_id:
                del self.owner[row_id]

    def to_record(self, job: BookJob, done: DoneRows | None) -> Callable[[str], bool]:
        """The rows of ``job`` its fold records (once the whole plan has been seen): those of
        this run's plan it holds, and those it holds that the plan left out (--ids, --limit,
        a row gone from the manifest) and the ledger has not finished: a paid result is never
        dropped because this run did not select its row."""
        mine = {row_id for row_id in job.rows if self.owner.get(row_id) == job.job_id}
        outside = [row_id for row_id in job.rows if row_id in mine and row_id not in self.pending]
        finished = done.among(outside) if done is not None else set(outside)
        return ((mine & self.pending) | (set(outside) - finished)).__contains__


class Feeder:
    """Writes the rows of one run into request files, one open file per model."""

    def __init__(
        self,
        services: RunServices,
        provider: Provider,
        *,
        route: BatchRoute,
        book: BatchBook,
        rows: Rows,
        cut: Cut,
        records: Records,
    ) -> None:
        self.services = services
        self.records = records  # invalid rows (a source gone bad since the plan)
        self.provider = provider
        self.route = route
        self.book = book
        self.rows = rows
        self.cut = cut
        self.open: dict[str, RequestFile] = {}  # by model
        self._next = int(book.next_job_id()[1:])

    def new_id(self) -> str:
        job_id = f"j{self._next:04d}"
        self._next += 1
        return job_id

    async def feed(
        self,
        jobs: Jobs,
        submit: Submit,
        late: Callable[[], bool],
        online: list[Job],
    ) -> None:
        """Take the whole job stream (or until a drain); ``late``: the deadline's fallback is
        due, rows go to ``online`` instead of a job."""
        control = self.services.control
        try:
            async with jobs:
                async for job in jobs:
                    if control.draining:
                        break
                    if job.row_id in self.rows.owner:
                        self.rows.pending.add(job.row_id)
                    elif late():
                        online.append(job)
                    else:
                        await self._add(job, submit, self.open, 0)
            await self._end(self.open, submit)
        finally:
            self.rows.feed_done.set()

    async def resubmit(self, entries: list[RowEntry], round_: int, submit: Submit) -> None:
        """Rows a job did not finish, into new jobs (their requests made again)."""
        files: dict[str, RequestFile] = {}
        for entry in entries:
            if self.services.control.draining:
                break
            await self._add(entry.job, submit, files, round_)
        await self._end(files, submit)

    async def _end(self, files: dict[str, RequestFile], submit: Submit) -> None:
        for model in list(files):
            if self.services.control.draining:
                await anyio.to_thread.run_sync(self.discard, files, model)
            else:
                await self.seal(files, model, submit)

    async def _add(
        self, job: Job, submit: Submit, files: dict[str, RequestFile], round_: int
    ) -> None:
        services = self.services
        config = services.config
        try:
            # A batch job is its own tier: the request asks for none (its row keeps its tier
            # for the online fallback; the tier is not in the fingerprint).
            standard = replace(job, tier=Tier.STANDARD)
            request = await anyio.to_thread.run_sync(
                self.provider.prepare, standard, services.sources
            )
        except SourceImageError as e:
            invalid = InvalidRow(job.row_id, job.line, "images", str(e))
            await self._invalid(invalid)
            return
        size = effective_size(job)
        reserved = config.prices.worst_case(
            job.model, size, len(job.images), batch=True, route=config.provider
        )
        if not services.spend.reserve(reserved):
            services.control.drain(Halt.COST_CAP)
            return
        line = self.route.request_line(job.row_id, request)
        output = result_bytes(size)
        current = files.get(request.model)
        if current is not None and not self.cut.takes(
            len(current.rows) + 1, current.output + output, current.size + len(line)
        ):
            await self.seal(files, request.model, submit)
        current = files.get(request.model)
        if current is None:
            out = self.services.config.out_dir
            current = RequestFile(out, self.new_id(), request.model, round_)
            files[request.model] = current
        entry = RowEntry(job, request.fingerprint, size)
        await anyio.to_thread.run_sync(current.add, entry, line, output, reserved)
        self.rows.pending.add(job.row_id)
        checkpoint("writing")

    async def _invalid(self, invalid: InvalidRow) -> None:
        await self.records.send(invalid_record(invalid, self.services.clock.now()))

    async def seal(self, files: dict[str, RequestFile], model: str, submit: Submit) -> None:
        """Close ``model``'s open file, plan it as a job, and start it on its way."""
        current = files.pop(model)
        await anyio.to_thread.run_sync(current.close)
        job = await self.plan(current)
        await submit(job)

    async def plan(self, current: RequestFile) -> BookJob:
        now = self.services.clock.now()

        def plan() -> BookJob:
            return self.book.plan(
                job_id=current.job_id,
                model=current.model,
                request_file=request_path(current.job_id),
                size=current.size,
                sha256=current.sha256,
                rows=current.rows,
                reserved_usd=current.reserved,
                round=current.round,
                at=now,
            )

        job = await anyio.to_thread.run_sync(plan)
        self.rows.hold(job)
        return job

    def discard(self, files: dict[str, RequestFile], model: str) -> None:
        """A drain: the open file is dropped, its rows stay pending, its reservation freed."""
        current = files.pop(model)
        current.discard()
        self.services.spend.settle(current.reserved, 0.0)
        self.rows.pending.difference_update(current.rows)
