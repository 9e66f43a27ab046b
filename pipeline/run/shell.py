"""The run shell: one manifest into one output directory, whatever executes the rows.

    producer --(bounded stream of jobs)--> executor --(bounded stream of records)--> writer

The shell opens what the run needs (the one pass over the manifest, ``start.check``, unless
the caller made it; what a killed run had in flight, the job's earlier spend, the disk
reserve), plans it from that pass's rows (``start``), then runs one task
group: the producer reads the plan a batch at a time in a thread and feeds the executor, the
executor (``executor.Executor``: online today, batch next) turns jobs into records, and the one
writer (``writer``) makes them durable. Signals, the --stop-at deadline and progress views run
beside it. Afterwards it settles the run (``finish``) and closes what it opened.

The shell never sends a request: it does not know whether a row goes one request each or into
a job with others. Nothing is created per row up front, so memory does not depend on the
manifest's size.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any

import anyio
import structlog
from anyio.streams.memory import MemoryObjectSendStream

from pipeline.core import nowait
from pipeline.core.config import RunConfig
from pipeline.core.types import InvalidRow, Job
from pipeline.plan.checkpass import CheckedManifest
from pipeline.plan.planner import PlannedBatch
from pipeline.run import finish, writer
from pipeline.run import start as runstart
from pipeline.run.executor import Executor, Record, Records, RunServices
from pipeline.run.result import RunResult
from pipeline.run.start import RunStart
from pipeline.store.ledger import Ledger, LedgerRecord
from pipeline.store.records import invalid_record

log = structlog.get_logger("nanobatch")

Observer = Callable[[RunResult], Coroutine[Any, Any, None]]  # runs beside the run: progress views

RECORDS_PER_JOB_SLOT = 4  # records waiting for the writer per job waiting for the executor
# Records that can wait while the writer paces its commits (``writer.PACE_S``): a flood of
# invalid rows or a batch job's fold fills a group at once and is not held back by the pace
# (20,000 invalid rows waited 4.4 s at --concurrency 16 with room for 64, on the virtual clock).
RECORDS_WAITING_MIN = 1024


class RunShell:
    """Runs one manifest with one executor into one (opened) ledger."""

    def __init__(self, config: RunConfig, ledger: Ledger) -> None:
        self.ledger = ledger
        self.services = RunServices(config, ledger.provenance)

    async def run(
        self,
        executor: Executor,
        observers: Sequence[Observer] = (),
        checked: CheckedManifest | None = None,
    ) -> RunResult:
        """Process every pending row; returns when all are recorded or the run was stopped.

        ``observers`` run alongside (progress displays) and are cancelled at the end.
        ``checked`` is the one pass over the manifest when the caller made it (and closes it);
        without it the shell makes its own (``start.check``) and removes it at the end.
        """
        if checked is None:
            config = self.services.config
            checked = await anyio.to_thread.run_sync(runstart.check, config, self.ledger)
            try:
                return await self.run(executor, observers, checked)
            finally:
                checked.close()
        services = self.services
        services.config = checked.config
        await self._open()
        try:
            begun = await runstart.start(services.config, self.ledger, services.sources, checked)
            services.result.to_do = begun.scan.to_do
            services.done = begun.done
            await self._run_group(executor, begun, observers)
            finish.settle_halt(services, executor)
            await finish.set_orphans_aside(services, begun)
            await finish.save_plan_state(services, begun)
        finally:
            self._close()
        result = services.result
        result.finished = services.clock.monotonic()
        log.info("run.finished", **dict(result.by_status), duration_s=result.duration_s)
        return result

    async def _open(self) -> None:
        """Everything claimed before the plan: a refusal here sends nothing."""
        services = self.services
        await runstart.recover_in_flight(services.inflight, self.ledger)
        # The cap is the job's: what earlier runs in this directory spent counts against it.
        earlier = await runstart.earlier_spend(services.config)
        services.spend.earlier_usd = services.result.spent_before_usd = earlier
        await anyio.to_thread.run_sync(services.disk.reserve)

    def _close(self) -> None:
        services = self.services
        services.disk.release()
        services.result.stored_bytes = services.disk.stored_bytes
        services.inflight.close()

    async def _run_group(
        self, executor: Executor, begun: RunStart, observers: Sequence[Observer]
    ) -> None:
        """The one task group: writer, watchers, and the producer feeding the executor."""
        services, config, control = self.services, self.services.config, self.services.control
        batches = iter(begun.planner)
        jobs_send, jobs_recv = anyio.create_memory_object_stream[Job](config.concurrency)
        # While the writer waits for its pace, what arrives waits here.
        rec_send, rec_recv = anyio.create_memory_object_stream[Record](
            max(config.concurrency * RECORDS_PER_JOB_SLOT, RECORDS_WAITING_MIN)
        )
        log.info("run.started", manifest=str(config.manifest), done_before=len(begun.done))
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.write, services, self.ledger, rec_recv)
            async with anyio.create_task_group() as watchers:
                if config.handle_signals:
                    watchers.start_soon(control.watch_signals)
                if config.stop_at is not None:
                    watchers.start_soon(control.watch_deadline, config.stop_at)
                for observer in observers:
                    watchers.start_soon(observer, services.result)
                # A second signal cancels this scope: the requests in flight with it.
                async with anyio.create_task_group() as pool:
                    control.attach(pool.cancel_scope)
                    pool.start_soon(executor.execute, services, jobs_recv, rec_send.clone())
                    pool.start_soon(self._produce, begun, batches, jobs_send, rec_send)
                watchers.cancel_scope.cancel()

    async def _produce(
        self,
        begun: RunStart,
        batches: Iterator[PlannedBatch],
        jobs: MemoryObjectSendStream[Job],
        records: Records,
    ) -> None:
        """Feed planned jobs to the executor; invalid and adopted rows go straight to the
        writer. Stops feeding as soon as the run drains (rows left stay pending)."""
        control, result = self.services.control, self.services.result
        async with jobs, records:
            while not control.draining:
                planned = await anyio.to_thread.run_sync(begun.next_batch, batches)
                if planned is None:
                    return
                batch, items = planned
                result.skipped += batch.skipped
                result.changed += batch.changed
                for item in items:
                    if control.draining:
                        return
                    if isinstance(item, InvalidRow):
                        await records.send(invalid_record(item, self.services.clock.now()))
                    elif isinstance(item, LedgerRecord):
                        await records.send(item)  # adopted: made by this very request before
                    else:
                        try:
                            await nowait.send(jobs, item)
                        except anyio.BrokenResourceError:
                            if control.draining:
                                return  # the executor stopped taking jobs: a drain
                            raise
