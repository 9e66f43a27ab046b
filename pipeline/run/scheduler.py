"""The worker pool: one task group with a producer, N workers and one ledger writer.

    producer --(bounded stream of jobs)--> N workers --(bounded stream of records)--> writer

The producer reads the manifest plan (``runstart``) in a thread, a batch at a time; workers
run each row's attempt loop (``rowloop``: bounded by an adaptive (AIMD) capacity limiter and,
with --rpm, a smooth rate limiter); the writer makes records durable in groups. Nothing is
created per row up front, so memory does not depend on the manifest size.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any

import anyio
import httpx
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from pipeline.commands.validate import strict_check
from pipeline.core.budget import SpendingCap
from pipeline.core.config import RunConfig
from pipeline.core.errors import user_error
from pipeline.core.models import resolve_model
from pipeline.core.types import InvalidRow, Job
from pipeline.plan import planstate
from pipeline.plan.planner import PlannedBatch
from pipeline.plan.sources import SourceCache
from pipeline.providers.http import ClientPool, GeminiClient
from pipeline.run import start as runstart
from pipeline.run.adaptive import AdaptiveLimit
from pipeline.run.control import Halt, RunControl
from pipeline.run.grace import DrainGrace
from pipeline.run.pacing import RateGate, smooth_limiter
from pipeline.run.recovery import set_aside
from pipeline.run.result import RunResult
from pipeline.run.rowloop import Record, RowLoop
from pipeline.run.unusable import UnusableModels
from pipeline.store.diskspace import DiskGuard, default_headroom, open_ledger
from pipeline.store.inflight import InFlight
from pipeline.store.ledger import AttemptRecord, Ledger, LedgerRecord
from pipeline.store.records import invalid_record
from pipeline.store.spend import spent_in

log = structlog.get_logger("nanobatch")


# Rows in progress per request slot. Most of a row's life under faults is spent waiting (a
# 429's delay, a backoff, the shared pause); a waiting row holds no slot, so twice as many
# rows as slots keep the slots busy. Requests in flight never pass --concurrency.
ROWS_PER_SLOT = 2

Observer = Callable[[RunResult], Coroutine[Any, Any, None]]  # runs beside the pool: progress views


class Pipeline(RowLoop):
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
        self.inflight = InFlight(config.out_dir)
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
        self.config = await anyio.to_thread.run_sync(runstart.settled_ids, self.config, self.ledger)
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
        self.begun = begun = await runstart.start(self.config, self.ledger, self.sources)
        self.result.to_do = begun.scan.to_do
        planner, done = begun.planner, begun.done
        batches = iter(planner)
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
        if begun.orphans and whole_manifest and not self.control.draining:
            await anyio.to_thread.run_sync(set_aside, self.config.out_dir, begun.orphans)
        if planner.finished and whole_manifest and not begun.trusted and not self.disk.error:
            # Every done row was checked against these inputs: the next resume can trust them.
            await anyio.to_thread.run_sync(
                planstate.save,
                self.config.out_dir,
                begun.inputs,
                planner.source_paths,
                self.sources,
            )
        self.result.finished = time.monotonic()
        log.info("run.finished", **dict(self.result.by_status), duration_s=self.result.duration_s)
        return self.result

    async def _produce(
        self,
        batches: Iterator[PlannedBatch],
        jobs: MemoryObjectSendStream[Job],
        records: MemoryObjectSendStream[Record],
    ) -> None:
        async with jobs, records:
            while not self.control.draining:
                planned = await anyio.to_thread.run_sync(self.begun.next_batch, batches)
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
    except BaseExceptionGroup as group:
        # Other tasks then find the record stream closed: consequences, not causes.
        closed = (anyio.BrokenResourceError, anyio.ClosedResourceError)
        if (error := user_error(group, closed)) is None:
            raise
        raise error from None
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(ledger.close)


def workers(config: RunConfig) -> int:
    """Rows in progress at once (each worker holds one)."""
    return ROWS_PER_SLOT * config.concurrency
