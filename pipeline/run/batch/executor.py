"""The batch executor: rows collected into Batch API jobs, polled, and folded into the ledger.

    jobs --feed--> request files --submit--> jobs at Google --poll--> results --fold--> records

It reconciles what earlier runs left first (``submit.reconcile``: a job a lost answer left
unrecorded is adopted, never created twice; files nobody needs are deleted), then feeds the
plan into request files (``feed``) while ONE poll loop watches every live job with backoff on
the run's clock. A job that ends is downloaded and folded (``fold``); the rows it did not
finish are resubmitted in a new job (up to ``MAX_ROUNDS`` submissions in all, then failed),
or sent online (``fallback.send_online``) with ``--fallback online``. At ``--deadline`` minus
``--fallback-margin`` every unfinished job is cancelled and, once it is terminal and folded,
its unfinished rows go online, as do rows not yet in a job. A drain stops polling and
returns: jobs keep running at Google, their rows stay pending, the next run resumes them.
Every step at Google is journalled in the book (``store.batchbook``) before it is taken.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import anyio
import structlog

from pipeline.core.config import Fallback, RunConfig
from pipeline.core.errors import UsageError
from pipeline.core.types import Job, Outcome, Status
from pipeline.providers.base import Provider
from pipeline.providers.batchapi import BatchRoute, RemoteJob
from pipeline.providers.http import ClientPool, HttpClient
from pipeline.run.batch import fallback, phases
from pipeline.run.batch.calls import Calls, Halted, delete_file
from pipeline.run.batch.feed import Feeder, Rows
from pipeline.run.batch.fold import Folded, Folder
from pipeline.run.batch.phases import checkpoint
from pipeline.run.batch.requestfile import RowEntry, remove_job_files, remove_stray_files
from pipeline.run.batch.seen import SeenJobs
from pipeline.run.batch.sizing import Cut
from pipeline.run.batch.steps import GONE
from pipeline.run.batch.submit import Submitter
from pipeline.run.executor import Jobs, Records, RunServices
from pipeline.store.batchbook import BatchBook
from pipeline.store.bookjob import CANCEL_REQUESTED, BookJob, Phase, stamp

log = structlog.get_logger("nanobatch")

POLL_FIRST_S = 15.0  # the first wait between two looks at the live jobs
POLL_MAX_S = 300.0  # ...growing by half each time nothing moved, up to this
MAX_ROUNDS = 3  # submissions of one row in batch before it fails
# How long a job's result file can exist after the job was created: up to 48 hours running,
# then the file's own 48 hours (docs: files are kept 48 h).
RESULTS_LAST = timedelta(hours=96)


class BatchExecutor:
    """Sends rows as Batch API jobs (``executor.Executor``)."""

    def __init__(self, config: RunConfig, clients: ClientPool, provider: Provider) -> None:
        self.config = config
        self.clients = clients
        self.provider = provider

    def route(self) -> BatchRoute:
        batch_route = getattr(self.provider, "batch_route", None)
        if batch_route is None or not self.provider.capabilities.batch:
            raise UsageError(f"--mode batch: --provider {self.provider.name} takes no batch jobs")
        route: BatchRoute = batch_route()
        return route

    async def execute(self, services: RunServices, jobs: Jobs, records: Records) -> None:
        """Reconcile, feed, poll and fold until every row is recorded or the run drains."""
        async with jobs, records:
            book = BatchBook(services.config.out_dir)
            await anyio.to_thread.run_sync(book.open)
            try:
                run = _Run(self, services, self.route(), book, records)
                await run.go(jobs)
            finally:
                book.close()

    def stopped(self) -> Outcome | None:
        return None  # a stopping answer stops the run when it comes (services.stop)


class _Run:
    """One run of the batch executor."""

    def __init__(
        self,
        executor: BatchExecutor,
        services: RunServices,
        route: BatchRoute,
        book: BatchBook,
        records: Records,
    ) -> None:
        self.executor = executor
        self.services = services
        self.config = services.config
        self.book = book
        self.records = records
        client: HttpClient = executor.clients.for_worker(0)
        self.route, self.client = route, client
        self.calls = Calls(services)
        self.submitter = Submitter(services, route, client, book, self.calls)
        self.folder = Folder(
            services, route, client=client, book=book, calls=self.calls, records=records
        )
        self.rows = Rows(book)
        cut = Cut.of(self.config)
        self.feeder = Feeder(
            services,
            executor.provider,
            route=route,
            book=book,
            rows=self.rows,
            cut=cut,
            records=records,
        )
        self.late_rows: list[Job] = []  # rows the deadline sends online before any job
        self.submitting = 0  # jobs on their way to Google
        self.deadline_cancelled: set[str] = set()
        self.wake = anyio.Event()  # something the poll loop should look at now
        self.tg: anyio.abc.TaskGroup | None = None
        self.seen = SeenJobs(services.result)  # each live job as last seen at Google

    def late(self) -> bool:
        return fallback.fallback_due(self.config, self.services.clock.now())

    async def go(self, jobs: Jobs) -> None:
        services = self.services
        jobs_now = list(self.book.jobs.values())
        await anyio.to_thread.run_sync(remove_stray_files, self.config.out_dir, jobs_now)
        for job in self.book.live():
            services.spend.reserved_usd += job.reserved_usd  # created, or about to be
        try:
            for job in await self.submitter.reconcile():
                self.rows.release(job)  # cancelled before it was created: planned afresh
        except Halted:
            return
        watcher = anyio.CancelScope()
        async with anyio.create_task_group() as tg:
            self.tg = tg
            tg.start_soon(self._wake_on_drain, watcher)
            for job in self.book.live():
                if job.batch_name is None:
                    await self.submit(job)
            tg.start_soon(self._feed, jobs)
            await self.poll()
            # Tasks still going (an upload, rows sent online) end by themselves on a drain.
            watcher.cancel()

    async def _wake_on_drain(self, scope: anyio.CancelScope) -> None:
        with scope:
            await self.services.control.sleep(math.inf)
            self.wake.set()

    async def _feed(self, jobs: Jobs) -> None:
        try:
            await self.feeder.feed(jobs, self.submit, self.late, self.late_rows)
        finally:
            self.wake.set()
        if self.late_rows:
            await self.online(self.late_rows)

    async def submit(self, job: BookJob) -> None:
        """Start a planned job on its way (upload, create) beside the poll loop."""
        assert self.tg is not None
        self.submitting += 1
        self.tg.start_soon(self._submit, job)

    async def _submit(self, job: BookJob) -> None:
        try:
            await self.submitter.submit(job)
        except Halted:
            pass
        finally:
            self.submitting -= 1
            self.wake.set()

    async def online(self, rows: list[Job]) -> None:
        await fallback.send_online(
            self.services, self.executor.clients, self.executor.provider, rows, self.records
        )

    async def poll(self) -> None:
        """The one poll loop: every live job looked at, then a wait that grows while nothing
        moves; returns when no job is left to watch, or the run drains."""
        control, first = self.services.control, phases.first_poll_s(POLL_FIRST_S)
        interval = first
        while not control.draining:
            self.wake = anyio.Event()
            await anyio.to_thread.run_sync(self.book.refresh_cancels)
            if self.late():
                await self._cancel_for_deadline()
            moved = False
            for job in self.book.live():
                if control.draining:
                    return
                if job.batch_name is not None:
                    try:
                        moved |= await self._look(job)
                    except Halted:
                        return
            if self.rows.feed_done.is_set() and not self.submitting and not self.book.live():
                return
            interval = first if moved else min(POLL_MAX_S, interval * 1.5)
            wait = min(interval, fallback.seconds_to_fallback(self.config) or math.inf)
            with anyio.move_on_after(wait):
                await self.wake.wait()

    async def _look(self, job: BookJob) -> bool:
        """Poll one job; fold it once it ended. Whether anything moved."""
        assert job.batch_name is not None
        name = job.batch_name
        if job.state is None:
            remote = await self.submitter.look_up(job, name)
            checkpoint("polling")
            moved = self.seen.polled(job.job_id, remote)
            if not remote.state.terminal:
                if remote.state.value == "UNKNOWN":
                    log.warning("batch.unknown_state", job=job.job_id, state=remote.wire_state)
                if job.cancel_requested and job.job_id not in self.submitter.cancelled:
                    # Asked by ``batch cancel``, which could not get through (or whose cancel
                    # was lost): it is running and billing, so it is sent now.
                    log.warning("batch.cancelling_as_asked", job=job.job_id, batch=name)
                    await self.submitter.cancel(job, name)
                return moved
            # A job Google does not know any more is kept as such (not as a FAILED job: what
            # it did before it went is unknown, so the fold counts its rows as possibly billed).
            state = GONE if remote.wire_state == GONE else remote.state.value
            await self._record(job, Phase.ENDED, state=state)
            log.info("batch.job_ended", job=job.job_id, state=state)
        if not self.rows.feed_done.is_set():
            return True  # which of its rows this run must finish is not known yet
        return await self._finish(job)

    async def _remote(self, job: BookJob) -> RemoteJob:
        known = self.seen.get(job.job_id)
        if known is not None:
            return known
        assert job.batch_name is not None
        remote = await self.submitter.look_up(job, job.batch_name)
        self.seen.fetched(job.job_id, remote)
        return remote

    async def _finish(self, job: BookJob) -> bool:
        """Download, fold, hand on what it did not finish, clean up. False: not yet."""
        remote = await self._remote(job)
        if job.phase is Phase.ENDED:
            if remote.output_file is not None or remote.inline_output:
                if not await self.folder.download(job, remote):
                    if not results_expired(job, remote, self.services.clock.now()):
                        return False  # SUCCEEDED, its file not readable yet: poll again
                    # Past any file's 48 hours: waiting would never end. Its rows are handed
                    # on as those of a job that answered nothing (they were billed, and lost).
                    log.warning("batch.results_expired", job=job.job_id, rows=len(job.rows),
                                file=remote.output_file)  # fmt: skip
            elif job.state == "SUCCEEDED":
                self.seen.forget(job.job_id)  # look again for its file
                return False
        to_record = self.rows.to_record(job, self.services.done)
        folded = await self.folder.fold(job, to_record)
        # Its reservation is settled first: rows resubmitted reserve their own under the cap.
        spend = self.services.spend
        spend.settle(job.reserved_usd, folded.cost_usd)
        self.services.result.spent_usd = spend.spent_usd
        await self._unfinished(job, folded)
        if await self.folder.folded(job):  # journaled once its records are durable
            await self._clean(job, remote)
        return True

    async def _unfinished(self, job: BookJob, folded: Folded) -> None:
        """Rows the job did not finish: online, into a new job, back to pending, or failed."""
        if not folded.unfinished:
            return
        entries = [entry for entry, _ in folded.unfinished]
        deadline = job.job_id in self.deadline_cancelled or self.late()
        if deadline or (self.config.fallback is Fallback.ONLINE and job.state != "SUCCEEDED"):
            await self.online([e.job for e in entries])
        elif job.cancel_requested:
            log.warning("batch.cancelled_rows_pending", job=job.job_id, rows=len(entries))
        elif job.round + 1 < MAX_ROUNDS:
            log.info("batch.resubmitting", job=job.job_id, rows=len(entries), round=job.round + 1)
            await self.feeder.resubmit(entries, job.round + 1, self.submit)
        else:
            for entry, outcome in folded.unfinished:
                await self.folder.record(job, entry, outcome, Status.FAILED, folded)

    async def _cancel_for_deadline(self) -> None:
        """The deadline's fallback is due: cancel every live job (its rows go online once it
        is terminal and folded)."""
        for job in self.book.live():
            if job.batch_name is None or job.state is not None:
                continue
            if job.job_id in self.deadline_cancelled:
                continue
            self.deadline_cancelled.add(job.job_id)
            log.warning("batch.deadline_cancel", job=job.job_id, batch=job.batch_name)
            await self._record(job, CANCEL_REQUESTED)
            await self.submitter.cancel(job, job.batch_name)

    async def _clean(self, job: BookJob, remote: RemoteJob) -> None:
        """Delete the job's files at Google and on disk (its rows are in the ledger)."""
        for name in (job.file_name, remote.output_file):
            if name is not None:
                await delete_file(self.services, self.route, self.client, name)
        await self._record(job, Phase.CLEANED)
        self.seen.cleaned(job.job_id)
        # Only its own files: another job's request file may be being written right now.
        await anyio.to_thread.run_sync(remove_job_files, self.config.out_dir, job.job_id)

    async def _record(self, job: BookJob, kind: Phase | str, **fields: object) -> None:
        await self.submitter.journal(job, kind, **fields)


def results_expired(job: BookJob, remote: RemoteJob, now: datetime) -> bool:
    """Whether ``job``'s result file cannot be at Google any more: files last 48 hours, and a
    job's file is written at its end, at most 48 hours after it was created."""
    created = stamp(remote.created) or job.created_at or job.planned_at
    return created is not None and now - created > RESULTS_LAST


__all__ = ["BatchExecutor", "RowEntry"]
