"""The worker pool: one task group with a producer, N workers and one ledger writer.

    producer --(bounded stream of jobs)--> N workers --(bounded stream of records)--> writer

The producer reads the manifest plan in a thread, a batch at a time; workers send requests
(bounded by an adaptive (AIMD) capacity limiter and, with --rpm, a smooth rate limiter), classify
each answer and act on the retry policy's decision; the writer makes records durable in
groups. Nothing is created per row up front, so memory does not depend on the manifest size.
"""

from __future__ import annotations

import contextlib
import functools
import random
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

import anyio
import httpx
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from pipeline import planstate, provenance, rowids
from pipeline.adaptive import AdaptiveLimit
from pipeline.budget import SpendingCap, attempt_cost, worst_case
from pipeline.classify import classify, classify_failure
from pipeline.client import ClientPool, GeminiClient
from pipeline.config import RunConfig
from pipeline.control import Halt, RunControl
from pipeline.diskspace import DiskGuard, default_headroom, describe, open_ledger
from pipeline.grace import DrainGrace
from pipeline.imagecheck import decoded_mime
from pipeline.inflight import InFlight
from pipeline.ledger import AttemptRecord, Ledger, LedgerRecord
from pipeline.models import resolve_model
from pipeline.pacing import RateGate, smooth_limiter
from pipeline.plan import (
    PlannedBatch,
    Planner,
    check_manifest,
    done_rows,
    ledger_ids,
    settle_ids,
)
from pipeline.records import ABANDONED, CANCELLED, RowState, invalid_record, ledger_record, unstored
from pipeline.recovery import adoptable, claim, find_orphans, recorded_digests, set_aside
from pipeline.rename import name_change_note
from pipeline.request import PreparedRequest, effective_size, prepare
from pipeline.result import RunResult
from pipeline.retry import Action, decide
from pipeline.sources import SourceCache, SourceImageError
from pipeline.spend import spent_in
from pipeline.storage import StoredImage
from pipeline.types import (
    Delivery,
    ImagePart,
    InvalidRow,
    Job,
    NoAnswer,
    Outcome,
    OutcomeKind,
    RawResponse,
    Status,
)
from pipeline.unusable import UnusableModels
from pipeline.validate import strict_check

log = structlog.get_logger("nanobatch")

# Rows in progress per request slot. Most of a row's life under faults is spent waiting (a
# 429's delay, a backoff, the shared pause); a waiting row holds no slot, so twice as many
# rows as slots keep the slots busy. Requests in flight never pass --concurrency.
ROWS_PER_SLOT = 2

Record = LedgerRecord | AttemptRecord  # what workers hand to the ledger writer
Observer = Callable[[RunResult], Coroutine[Any, Any, None]]  # runs beside the pool: progress views


class Pipeline:
    """Runs one manifest against one server into one output directory."""

    def __init__(self, config: RunConfig, clients: ClientPool, ledger: Ledger) -> None:
        self.config = config
        self.clients = clients
        self.ledger = ledger
        self.result = RunResult()
        self.sources = SourceCache()
        self.adaptive = AdaptiveLimit(config.concurrency)
        self.gate = RateGate()
        self.limiter = smooth_limiter(config.rpm)
        self.rng = random.Random()
        self.control = RunControl()
        self.spend = SpendingCap(config.max_cost_usd)
        self.grace = DrainGrace(config.drain_grace_s)
        self.models = UnusableModels(resolve_model(config.model)[0])
        self.result.max_cost_usd = config.max_cost_usd
        self.orphans: dict[str, list[str]] = {}  # images a crashed run left unrecorded
        self.inflight = InFlight(config.out_dir)
        self.recorded: dict[str, list[str]] = {}  # with --rerun succeeded: what rows have now
        self.has_provenance = False  # the directory holds provenance records: look rows up
        headroom = config.disk_headroom_bytes
        self.disk = DiskGuard(
            config.out_dir,
            default_headroom(config.concurrency) if headroom is None else headroom,
            self._disk_trouble,
        )

    async def run(self, observers: Sequence[Observer] = ()) -> RunResult:
        """Process every pending row; returns when all are recorded or the run was stopped.

        ``observers`` run alongside (progress displays) and are cancelled at the end.
        """
        self.config = await anyio.to_thread.run_sync(self._settle_ids)
        if self.config.strict:
            await anyio.to_thread.run_sync(strict_check, self.config)
        # What a killed run had in flight may have been billed: into the history it goes.
        lost = await anyio.to_thread.run_sync(self.inflight.recover)
        if lost:
            await anyio.to_thread.run_sync(self.ledger.append, [], lost)
        await anyio.to_thread.run_sync(self.inflight.open)
        # The cap is the job's: what earlier runs in this directory spent counts against it.
        earlier = await anyio.to_thread.run_sync(spent_in, self.config.out_dir)
        self.spend.earlier_usd = self.result.spent_before_usd = earlier
        await anyio.to_thread.run_sync(self.disk.reserve)
        try:
            return await self._run(observers)
        finally:
            self.disk.release()
            self.result.stored_bytes = self.disk.stored_bytes
            self.inflight.close()

    async def _run(self, observers: Sequence[Observer]) -> RunResult:
        c = self.config
        done = await anyio.to_thread.run_sync(done_rows, self.ledger, c.rerun, c.rerun_before)
        note = await anyio.to_thread.run_sync(name_change_note, self.config, len(done))
        if note:
            log.warning("run.name_template_changed", note=note)
        scan = await anyio.to_thread.run_sync(check_manifest, self.config, done)
        self.result.to_do = scan.to_do
        inputs = await anyio.to_thread.run_sync(planstate.inputs, self.config)
        out = self.config.out_dir
        trusted = await anyio.to_thread.run_sync(planstate.trusted, out, inputs, self.sources)
        if not trusted:
            planstate.forget(out)  # rows recorded from now on may follow other inputs
        planner = Planner(self.config, done, self.sources, scan, verify_done=not trusted)
        if not trusted and len(done):
            # Read now, not when the first done row is planned: a ledger that cannot be read
            # must stop the run before anything is sent.
            await anyio.to_thread.run_sync(lambda: done.fingerprints)
        batches = iter(planner)
        if self.ledger.crashed:
            self.orphans = await anyio.to_thread.run_sync(find_orphans, self.ledger)
        if Status.SUCCEEDED in self.config.rerun:
            self.recorded = await anyio.to_thread.run_sync(recorded_digests, self.ledger)
        # A first run has no images to adopt: no lookup per row (one failed open each).
        self.has_provenance = await anyio.to_thread.run_sync(provenance.any_records, out)
        jobs_send, jobs_recv = anyio.create_memory_object_stream[Job](self.config.concurrency)
        rec_send, rec_recv = anyio.create_memory_object_stream[Record](self.config.concurrency * 4)
        log.info("run.started", manifest=str(self.config.manifest), done_before=len(done))
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._writer, rec_recv)
            async with anyio.create_task_group() as watchers:
                watchers.start_soon(self.grace.watch, self.control)
                if self.config.handle_signals:
                    watchers.start_soon(self.control.watch_signals)
                if self.config.stop_at is not None:
                    watchers.start_soon(self.control.watch_deadline, self.config.stop_at)
                for observer in observers:
                    watchers.start_soon(observer, self.result)
                async with anyio.create_task_group() as pool:
                    self.control.attach(pool.cancel_scope)
                    for index in range(workers(self.config)):
                        client = self.clients.for_worker(index)
                        pool.start_soon(self._worker, client, jobs_recv.clone(), rec_send.clone())
                    jobs_recv.close()
                    pool.start_soon(self._produce, batches, jobs_send, rec_send)
                watchers.cancel_scope.cancel()
        self.result.halt = self.control.halt
        if self.result.halt is None and (unusable := self.models.all_unusable()) is not None:
            self.result.stopped, self.result.halt = unusable, Halt.API
        whole_manifest = self.config.limit is None and self.config.ids_file is None
        if self.orphans and whole_manifest and not self.control.draining:
            await anyio.to_thread.run_sync(set_aside, self.config.out_dir, self.orphans)
        if planner.finished and whole_manifest and not trusted and not self.disk.error:
            # Every done row was checked against these inputs: the next resume can trust them.
            await anyio.to_thread.run_sync(
                planstate.save, out, inputs, planner.source_paths, self.sources
            )
        self.result.finished = time.monotonic()
        log.info("run.finished", **dict(self.result.by_status), duration_s=self.result.duration_s)
        return self.result

    def _settle_ids(self) -> RunConfig:
        """The run's id scheme: the folder's record, else --id-column or the header (recorded
        now, before any row is); a different one stops the run before anything is sent."""
        out = self.config.out_dir
        recorded, rows = rowids.load(out, ledger_ids(self.ledger))
        config, header = settle_ids(self.config, recorded, rows)
        if recorded is None or not (out / rowids.ID_FILE).exists():
            rowids.save(out, header.ids)
        for note in header.notes:
            log.warning("manifest.note", note=note)
        return config

    async def _produce(
        self,
        batches: Iterator[PlannedBatch],
        jobs: MemoryObjectSendStream[Job],
        records: MemoryObjectSendStream[Record],
    ) -> None:
        async with jobs, records:
            while not self.control.draining:
                planned = await anyio.to_thread.run_sync(self._next_batch, batches)
                if planned is None:
                    return
                batch, items = planned
                self.result.skipped += batch.skipped
                self.result.changed += batch.changed
                for item in items:
                    if self.control.draining:
                        return
                    if isinstance(item, InvalidRow):
                        await records.send(invalid_record(item))
                    elif isinstance(item, LedgerRecord):
                        await records.send(item)  # adopted: made by this very request before
                    else:
                        await jobs.send(item)

    def _next_batch(
        self, batches: Iterator[PlannedBatch]
    ) -> tuple[PlannedBatch, list[Job | InvalidRow | LedgerRecord]] | None:
        """The next planned batch, its rows whose images are already on disk adopted."""
        batch = next(batches, None)
        if batch is None:
            return None
        return batch, [self._adopt(i) if isinstance(i, Job) else i for i in batch.items]

    def _adopt(self, job: Job) -> Job | LedgerRecord:
        if not self.has_provenance and not self.orphans:
            return job
        by_name = claim(self.orphans, job) if self.orphans else []
        adopted = adoptable(job, by_name, self.config.out_dir, self.sources, self.recorded.get)
        return adopted or job

    async def _worker(
        self,
        client: GeminiClient,
        jobs: MemoryObjectReceiveStream[Job],
        records: MemoryObjectSendStream[Record],
    ) -> None:
        async with jobs, records:
            async for job in jobs:
                if self.control.draining:
                    continue  # drain: rows left here stay pending for the next run
                await self._process(client, job, records)

    async def _writer(self, records: MemoryObjectReceiveStream[Record]) -> None:
        async with records:
            async for first in records:
                group = [first]
                # Whatever else is already waiting shares this fsync (group commit).
                while True:
                    try:
                        group.append(records.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                rows = [r for r in group if isinstance(r, LedgerRecord)]
                attempts = [r for r in group if isinstance(r, AttemptRecord)]
                if not await self.disk.append(self.ledger, rows, attempts):
                    # The disk refused them even with the reserve freed: these rows stay
                    # pending (their images, if written, are adopted by the next run).
                    self.result.unrecorded += len(rows)
                    continue
                self.inflight.recorded(attempts)
                for row in rows:
                    self.result.by_status[row.status] += 1
                    self.result.by_reason[(row.status, row.reason)] += 1
                    log.debug(
                        "row.finished",
                        row_id=row.row_id,
                        status=row.status,
                        reason=row.reason,
                        attempts=row.attempts,
                        latency_ms=row.latency_ms,
                    )

    async def _process(
        self, client: GeminiClient, job: Job, records: MemoryObjectSendStream[Record]
    ) -> None:
        """Send one row until it reaches an outcome and record it (unless the run stops first)."""
        try:
            request = await anyio.to_thread.run_sync(self._prepare, job)
        except SourceImageError as e:
            await records.send(invalid_record(InvalidRow(job.row_id, job.line, "images", str(e))))
            return
        row = RowState(job, effective_size(job))
        while True:
            await self.gate.wait(self.control)
            if self.limiter is not None:
                with self.grace.wait():  # a drain must not wait for --rpm tokens
                    await self.limiter.acquire()
            if self.control.draining:
                return  # not sent: the row stays pending for the next run
            if (unusable := self.models.check(job)) is not None:
                # Its model is unusable: the row fails without being sent.
                await self._finish(
                    row, records, request=request, outcome=unusable, status=Status.FAILED
                )
                return
            # The slot is held until a final answer is recorded: a paid answer in hand counts
            # as a request in flight, so a kill can lose at most --concurrency of them.
            async with contextlib.AsyncExitStack() as slot:
                sent = await self._send(client, row, request, records, slot)
                if sent is None:
                    return  # the cap or a drain: not sent (or abandoned), the row stays pending
                outcome, latency_ms, cost = sent
                decision = decide(outcome, row.retry, self.config.retry, self.rng)
                log.debug(
                    "row.attempt",
                    row_id=job.row_id,
                    attempt=row.attempts,
                    kind=outcome.kind.value,
                    reason=outcome.reason,
                    http_status=outcome.http_status,
                    latency_ms=round(latency_ms, 1),
                    action=decision.action.value,
                    wait_s=round(decision.wait_s, 3),
                )
                await records.send(row.attempt_record(outcome, latency_ms, decision.wait_s, cost))
                if decision.action is Action.FAIL_MODEL and self.models.found(job, outcome):
                    self._stop(self.models.stopping(job))  # the default model: no row can go on
                    return
                if decision.action is Action.STOP_RUN:
                    self._stop(outcome)
                    return
                if decision.action is not Action.RETRY:
                    if decision.action is Action.FAIL_MODEL:
                        outcome = self.models.for_row(job)
                    assert decision.status is not None
                    await self._finish(row, records, request=request, outcome=outcome,
                                       status=decision.status, latency_ms=latency_ms)  # fmt: skip
            self.adaptive.on_answer(outcome)  # with the slot let go: what is borrowed is the burst
            if decision.action is not Action.RETRY:
                return
            self.result.retried[outcome.reason] += 1
            if decision.pause_pool:
                self.gate.pause_until(time.monotonic() + decision.wait_s)
            self.result.retrying += 1
            try:
                await self.control.sleep(decision.wait_s)
            finally:
                self.result.retrying -= 1

    async def _finish(
        self,
        row: RowState,
        records: MemoryObjectSendStream[Record],
        *,
        request: PreparedRequest,
        outcome: Outcome,
        status: Status,
        latency_ms: float = 0.0,
    ) -> None:
        # What was received is paid for: writing it and its record must not be cancelled
        # halfway by a second Ctrl-C.
        with anyio.CancelScope(shield=True):
            record = await self._record(
                row, request=request, outcome=outcome, status=status, latency_ms=latency_ms
            )
            await records.send(record)

    async def _send(
        self,
        client: GeminiClient,
        row: RowState,
        request: PreparedRequest,
        records: MemoryObjectSendStream[Record],
        slot: contextlib.AsyncExitStack,
    ) -> tuple[Outcome, float, float] | None:
        """One attempt: reserve its worst-case cost, take a slot (held by ``slot``), send,
        settle; the outcome, its latency and its cost. None if it was not sent (the cap, a
        drain) or was abandoned when a drain's grace ran out."""
        reserved = worst_case(row.job, row.size, self.config.prices)
        if not self.spend.reserve(reserved):
            self.control.drain(Halt.COST_CAP)
            return None
        await slot.enter_async_context(self.adaptive.slot(request.timeout_s))
        # A drain that began while this waited for a slot: send nothing more (the cap's own
        # drain excepted: this request fits under the cap, it holds its reservation).
        if self.control.draining and self.control.halt is not Halt.COST_CAP:
            self.spend.settle(reserved, 0.0)
            return None
        row.attempts += 1
        # The attempt's times cover the request only, not the wait for a slot.
        row.started_at = datetime.now(UTC)
        started = time.monotonic()
        try:
            self.inflight.sent(row.job.row_id, row.attempts, row.started_at, reserved)
        except OSError as e:
            # A request a kill could leave unaccounted for is never sent.
            self.spend.settle(reserved, 0.0)
            row.attempts -= 1
            self._disk_trouble(e)
            return None
        self.result.requests += 1
        self.result.in_flight += 1
        try:
            with self.grace.flight() as flight:
                outcome = await self._attempt(client, request)
        except anyio.get_cancelled_exc_class():
            # Abandoned mid-flight (a second Ctrl-C): the server may still finish and bill it,
            # so it is charged at its worst case and the attempt history says so.
            with anyio.CancelScope(shield=True):
                await self._abandon(row, reserved, started, CANCELLED, records)
            raise
        finally:
            self.result.in_flight -= 1
        if flight.cancelled_caught:
            # Still going when the drain's grace ran out: left pending for the next run.
            await self._abandon(row, reserved, started, ABANDONED, records)
            return None
        cost = attempt_cost(outcome, row.job, row.size, self.config.prices)
        self._charge(row, reserved, cost)
        return outcome, (time.monotonic() - started) * 1000, cost

    async def _abandon(
        self,
        row: RowState,
        reserved: float,
        started: float,
        why: Outcome,
        records: MemoryObjectSendStream[Record],
    ) -> None:
        """Record an attempt given up before its answer (possibly billed, by the one rule)."""
        cost = attempt_cost(why, row.job, row.size, self.config.prices)
        self._charge(row, reserved, cost)
        self.result.cancelled.append(row.job.row_id)
        await records.send(row.cancelled_record(started, cost, why))

    def _charge(self, row: RowState, reserved: float, cost: float) -> None:
        self.spend.settle(reserved, cost)
        row.cost_usd += cost
        self.result.spent_usd = self.spend.spent_usd

    def _prepare(self, job: Job) -> PreparedRequest:
        return prepare(job, self.sources, self.config.retry, fit_images=self.config.fit_images)

    async def _attempt(self, client: GeminiClient, request: PreparedRequest) -> Outcome:
        parse = functools.partial(classify, follow_links=self.config.follow_image_links)
        outcome = await client.generate(request.model, request.body, request.timeout_s, parse)
        if isinstance(outcome, NoAnswer):
            return classify_failure(*outcome)
        if outcome.kind is OutcomeKind.SUCCESS and not outcome.images and outcome.image_urls:
            outcome = await self._download(client, outcome, request.timeout_s)
        return outcome

    async def _download(self, client: GeminiClient, outcome: Outcome, timeout_s: float) -> Outcome:
        """Fetch images a gateway returned as links (--follow-image-links), without any
        credential; keep only what decodes as an image. The generation is paid: never resend it.
        """
        images = []
        for url in outcome.image_urls:
            for _ in range(3):
                answer = await client.download(url, timeout_s)
                if isinstance(answer, RawResponse) and answer.status == 200 and answer.body:
                    # The type from the bytes, not the header: a link may serve a web page.
                    mime = await anyio.to_thread.run_sync(decoded_mime, answer.body)
                    if mime is not None:
                        images.append(ImagePart(answer.body, mime))
                        break
        if len(images) == len(outcome.image_urls):
            return replace(outcome, images=tuple(images))
        return Outcome(
            kind=OutcomeKind.ROW_ERROR,
            reason="DOWNLOAD_FAILED",
            http_status=outcome.http_status,
            text=outcome.text,
            message="the image links in the answer could not be downloaded as images: "
            + " ".join(outcome.image_urls),
            usage=outcome.usage,
            delivery=Delivery.ANSWERED,  # the generation was answered: possibly billed
        )

    async def _record(
        self,
        row: RowState,
        *,
        request: PreparedRequest,
        outcome: Outcome,
        status: Status,
        latency_ms: float,
    ) -> LedgerRecord:
        job = row.job
        stored: list[StoredImage] = []
        if status is Status.SUCCEEDED:
            # With the record of the request that made them, written first (provenance).
            write = partial(provenance.store, row_id=job.row_id, fingerprint=request.fingerprint)
            written = await self.disk.store(job.output_stem, outcome.images, write)
            if isinstance(written, OSError):
                # Received and paid for, but not kept: the row fails (its cost stays on it),
                # the run goes on unless the disk itself is the trouble.
                self.result.unstored += 1
                self.result.unstored_bytes += sum(len(i.data) for i in outcome.images)
                status = Status.FAILED
                outcome = unstored(outcome, job.output_stem, written)
            else:
                stored = written
        return ledger_record(
            row,
            fingerprint=request.fingerprint,
            outcome=outcome,
            status=status,
            latency_ms=latency_ms,
            stored=stored,
        )

    def _disk_trouble(self, error: OSError) -> None:
        self.result.disk_error = describe(error)
        self.control.drain(Halt.DISK_FULL)

    def _stop(self, outcome: Outcome) -> None:
        if not self.control.draining:
            self.result.stopped = outcome
            log.error("run.stopping", reason=outcome.reason, http_status=outcome.http_status)
        self.control.drain(Halt.API)


async def run_manifest(
    config: RunConfig,
    transport: httpx.AsyncBaseTransport | None = None,
    observers: Sequence[Observer] = (),
) -> RunResult:
    """Open the output directory, run the manifest through the pool, and fold the ledger.

    ``transport`` is httpx's: None for the network, or the in-process emulator's.
    """
    ledger = Ledger(config.out_dir)
    await anyio.to_thread.run_sync(open_ledger, ledger)
    try:
        pool = ClientPool(transport, config.base_url, config.api_key, config.auth, workers(config))
        async with pool:
            return await Pipeline(config, pool, ledger).run(observers)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(ledger.close)


def workers(config: RunConfig) -> int:
    """Rows in progress at once (each worker holds one)."""
    return ROWS_PER_SLOT * config.concurrency
