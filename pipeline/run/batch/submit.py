"""Getting a planned job running at Google, each step journalled before it is taken: the
request file uploaded (resumable: a session the book names is resumed at its acknowledged
offset, a gone one restarted), then the job created (``creating`` first; if the answer is
lost, or a crash follows, the job is looked up by its display name before any new create, so
a job is never created twice). ``reconcile`` does the same lookups for a whole book after a
crash, and removes files at Google that no live job needs.

A job someone asked to cancel (``nanobatch batch cancel``) is never created afterwards: found
at Google (its create did reach it), it is adopted, and cancelled there if it still runs;
not found, it is abandoned, and its rows are rows not yet sent, which a run plans afresh in a
new job. So a cancelled job and a new one never both bill the same rows.
"""

from __future__ import annotations

from functools import partial

import structlog

from pipeline.providers.batchapi import BatchCallError, RemoteFile, RemoteJob
from pipeline.run.batch.calls import delete_file
from pipeline.run.batch.phases import checkpoint
from pipeline.run.batch.steps import JobSteps
from pipeline.store.batchbook import DISPLAY_PREFIX
from pipeline.store.bookjob import BookJob, Phase

log = structlog.get_logger("nanobatch")


class Submitter(JobSteps):
    """Uploads and creates the jobs of one book, through one route."""

    async def submit(self, job: BookJob) -> None:
        """Upload (or go on uploading) and create ``job``; raises ``Halted`` on a drain."""
        if job.phase in (Phase.PLANNED, Phase.UPLOAD_STARTED):
            await self._upload(job)
        if job.phase in (Phase.UPLOADED, Phase.CREATING):
            await self._create(job)

    async def _upload(self, job: BookJob) -> None:
        route, client = self.route, self.client
        session = job.session_url
        if session is not None:
            offset = await self.calls.do(partial(route.upload_offset, client, session))
            if offset is None:
                session = None  # expired or unknown: a new session sends the whole file
        if session is None:
            session = await self.calls.do(
                lambda: route.start_upload(client, size=job.bytes, display_name=job.display_name)
            )
            await self.journal(job, Phase.UPLOAD_STARTED, session_url=session)
        checkpoint("uploading")
        assert job.request_file is not None
        path = self.out_dir / job.request_file
        live = session

        def acknowledged(_offset: int) -> None:
            checkpoint("uploading")

        remote: RemoteFile = await self.calls.do(
            lambda: route.send_upload(
                client, live, path, on_offset=acknowledged, display_name=job.display_name
            )
        )
        await self.journal(job, Phase.UPLOADED, file_name=remote.name)

    async def find(self, job: BookJob) -> RemoteJob | None:
        """The job at Google carrying ``job``'s display name, if there is one."""
        remote = await self.calls.do(lambda: self.route.list_jobs(self.client))
        found = [r for r in remote if r.display_name == job.display_name]
        return found[0] if found else None

    async def _create(self, job: BookJob) -> None:
        if job.phase is Phase.CREATING and (found := await self.find(job)) is not None:
            await self._adopt(job, found)  # a create a crash or a lost answer left unrecorded
            return
        if job.cancel_requested:  # asked while this run had it on its way: its rows wait
            await self.abandon(job)
            return
        if self.services.control.draining:
            return
        await self.journal(job, Phase.CREATING)
        try:
            remote = await self.calls.do(
                lambda: self.route.create_job(
                    self.client,
                    model=job.model,
                    display_name=job.display_name,
                    file_name=job.file_name,
                ),
                before_retry=lambda: self.find(job),
                refusal_ok=job.job_id not in self.reuploaded,
            )
        except BatchCallError as e:  # refused: no job was made
            await self._upload_again(job, e)
            await self._create(job)
            return
        checkpoint("creating")
        await self._adopt(job, remote)

    async def _upload_again(self, job: BookJob, refused: BatchCallError) -> None:
        """After a refused create: a request file Google no longer has (deleted there, or past
        its 48 hours, as after a crash and a rerun days later) is uploaded again, once per run;
        any other refusal stops the run, as before."""
        assert job.file_name is not None
        name = job.file_name
        if await self.calls.do(partial(self.route.get_file, self.client, name)) is not None:
            self.calls.stop(refused)
        log.warning("batch.request_file_gone", job=job.job_id, file=name,
                    meaning="not at Google any more: uploaded again")  # fmt: skip
        self.reuploaded.add(job.job_id)
        job.session_url = None  # its session finished that file: a new one sends it whole
        await self._upload(job)

    async def _adopt(self, job: BookJob, remote: RemoteJob) -> None:
        log.info("batch.job_created", job=job.job_id, batch=remote.name, rows=job.requests)
        await self.journal(job, Phase.CREATED, batch_name=remote.name, created=remote.created)
        if job.cancel_requested and not remote.state.terminal:
            # Created after a cancel looked for it: cancelled now, as was asked.
            log.warning("batch.cancelling_late_job", job=job.job_id, batch=remote.name)
            await self.cancel(job, remote.name)

    async def abandon(self, job: BookJob) -> None:
        """A job cancelled before Google created it: never created now; its rows are free
        (not yet sent in batch) and its reservation is given back."""
        log.warning("batch.cancelled_before_created", job=job.job_id, rows=len(job.rows))
        await self.journal(job, Phase.ABANDONED, reason="cancelled before it was created")
        self.services.spend.settle(job.reserved_usd, 0.0)

    async def reconcile(self) -> list[BookJob]:
        """After a crash: adopt jobs a lost answer left unrecorded, abandon the ones cancelled
        before they were created (returned: their rows are free), and delete files at Google
        this book made that no job still needs (an upload a crash cut short, or whose job is
        done). Jobs in the book that are not yet created go on in ``submit``."""
        jobs = list(self.book.jobs.values())
        abandoned: list[BookJob] = []
        for job in jobs:
            if not job.holds_rows or job.batch_name is not None:
                continue
            found = await self.find(job) if job.phase is Phase.CREATING else None
            if found is not None:
                await self._adopt(job, found)
            elif job.cancel_requested:
                await self.abandon(job)
                abandoned.append(job)
        if not jobs:
            return abandoned
        files = await self.calls.do(lambda: self.route.list_files(self.client))
        ours = f"{DISPLAY_PREFIX}{self.book.tag}-"
        # A job's request file is needed until the job ends; one finalized but not yet
        # recorded (a crash after the last chunk) is found again by its display name.
        waiting = {job.display_name: job for job in jobs if job.holds_rows and job.state is None}
        for remote in files:
            holder = waiting.get(remote.display_name)
            if holder is not None and holder.file_name in (None, remote.name):
                continue
            if remote.display_name.startswith(ours):
                log.info("batch.file_deleted", file=remote.name, why="no job needs it")
                await delete_file(self.services, self.route, self.client, remote.name)
        return abandoned
