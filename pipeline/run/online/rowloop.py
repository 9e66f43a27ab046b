"""The per-row attempt loop a worker runs: wait for the shared rate gate and --rpm, take a
request slot, reserve the attempt's worst-case cost under the cap, send, act on the retry
policy's decision, and record the row's attempts and its final outcome (its images stored
first). What it shares with the rest of the run comes from the shell (``RunServices``) and
from the online executor (its slots, pacing and drain grace); one attempt and its money are
``attempt``'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from pipeline.core import logs, nowait
from pipeline.core.models import effective_size
from pipeline.core.retry import Action, decide
from pipeline.core.types import InvalidRow, Job, Outcome, Status
from pipeline.plan.sources import SourceImageError
from pipeline.providers.base import PreparedRequest, Provider
from pipeline.providers.http import HttpClient
from pipeline.run.executor import Jobs, Records, RunServices
from pipeline.run.final import final_record
from pipeline.run.online.adaptive import Holding
from pipeline.run.online.attempt import AttemptSender
from pipeline.run.tiers import TierFallback
from pipeline.store.records import RowState, invalid_record

if TYPE_CHECKING:  # the executor builds the loop: no import cycle at run time
    from pipeline.run.online.executor import OnlineExecutor


class RowLoop:
    """Sends rows to their outcomes, one request per attempt; one instance serves every worker."""

    def __init__(self, services: RunServices, provider: Provider, pool: OnlineExecutor) -> None:
        self.services = services
        self.provider = provider  # builds each request, reads each answer
        # The run's, shared with the shell and its writer.
        self.config = services.config
        self.clock = services.clock
        self.result = services.result
        self.control = services.control
        # The online executor's, shared by its workers: slots, pacing, grace, unusable models.
        self.pool = pool
        self.sender = AttemptSender(services, provider, pool)  # one attempt and its money
        self.tiers = TierFallback(self.config.retry.fallback, self.result)  # refused, moved

    async def work(
        self,
        client: HttpClient,
        jobs: Jobs,
        records: Records,
    ) -> None:
        """One worker: take rows from ``jobs`` one at a time until the stream ends."""
        async with jobs, records:
            while True:
                try:
                    job = await nowait.receive(jobs)
                except anyio.EndOfStream:
                    return
                if self.control.draining:
                    continue  # drain: rows left here stay pending for the next run
                await self._process(client, job, records)

    async def _process(self, client: HttpClient, job: Job, records: Records) -> None:
        """Send one row until it reaches an outcome and record it (unless the run stops first)."""
        request = await self._prepare(job, records)
        if request is None:
            return
        row = RowState(job, effective_size(job), route=self.config.provider)
        while True:
            await self.pool.gate.wait(self.control)
            if self.pool.limiter is not None:
                with self.pool.grace.wait():  # a drain must not wait for --rpm tokens
                    await self.pool.limiter.acquire()
            if self.control.draining:
                return  # not sent: the row stays pending for the next run
            if (moved := self.tiers.check(row.job)) is not None:  # its tier was refused
                fresh = await self._move(row, moved, records)
                if fresh is None:
                    return
                request = fresh
            if (unusable := self.pool.models.check(job)) is not None:
                # Its model is unusable: the row fails without being sent.
                await self._finish(
                    row, records, request=request, outcome=unusable, status=Status.FAILED
                )
                return
            # The slot is held until a final answer is recorded: a paid answer in hand counts
            # as a request in flight, so a kill can lose at most --concurrency of them.
            with Holding() as slot:
                sent = await self.sender.send(client, row, request, records, slot)
                if sent is None:
                    return  # the cap or a drain: not sent (or abandoned), the row stays pending
                outcome, latency_ms, cost = sent
                decision = decide(
                    outcome, row.retry, self.config.retry, self.pool.rng, self.clock.now()
                )
                logs.debug(
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
                now = self.clock.now()
                await nowait.send(
                    records, row.attempt_record(outcome, latency_ms, decision.wait_s, cost, now)
                )
                if decision.action is Action.FAIL_MODEL and self.pool.models.found(job, outcome):
                    # The default model: no row can go on.
                    self.services.stop(self.pool.models.stopping(job))
                    return
                if decision.action is Action.STOP_RUN:
                    self.services.stop(outcome)
                    return
                if decision.action not in (Action.RETRY, Action.FALL_BACK):
                    if decision.action is Action.FAIL_MODEL:
                        outcome = self.pool.models.for_row(job)
                    assert decision.status is not None
                    await self._finish(row, records, request=request, outcome=outcome,
                                       status=decision.status, latency_ms=latency_ms)  # fmt: skip
            self.pool.adaptive.on_answer(
                outcome
            )  # with the slot let go: what is borrowed is the burst
            if decision.action is Action.FALL_BACK:  # at once: the new tier has not refused it
                fresh = await self._move(row, self.tiers.fall_back(row.job, outcome), records)
                if fresh is None:
                    return
                request = fresh
                continue
            if decision.action is not Action.RETRY:
                return
            self.result.retried[outcome.reason] += 1
            if decision.pause_pool:
                self.pool.gate.pause_until(self.clock.monotonic() + decision.wait_s)
            self.result.retrying += 1
            try:
                await self.control.sleep(decision.wait_s)
            finally:
                self.result.retrying -= 1

    async def _finish(
        self,
        row: RowState,
        records: Records,
        *,
        request: PreparedRequest,
        outcome: Outcome,
        status: Status,
        latency_ms: float = 0.0,
    ) -> None:
        # What was received is paid for: writing it and its record must not be cancelled
        # halfway by a second Ctrl-C.
        with anyio.CancelScope(shield=True):
            record = await final_record(
                self.services,
                row,
                fingerprint=request.fingerprint,
                outcome=outcome,
                status=status,
                latency_ms=latency_ms,
            )
            await nowait.send(records, record)

    async def _move(self, row: RowState, job: Job, records: Records) -> PreparedRequest | None:
        """Send the row as ``job`` (its fallback tier) from now on: its request made again
        (None: a source went bad meanwhile, and the row is recorded invalid)."""
        row.job, row.retry.sheds = job, 0
        return await self._prepare(job, records)

    async def _prepare(self, job: Job, records: Records) -> PreparedRequest | None:
        """``job``'s request, built off the event loop when it reads source images (None: a
        source went bad, and the row is recorded invalid)."""
        try:
            if not job.images:
                # Nothing to read: building a JSON body is cheaper than a thread's hand-off,
                # which costs the process more CPU than the work (docs/benchmarks.md).
                return self.provider.prepare(job, self.services.sources)
            return await anyio.to_thread.run_sync(self.provider.prepare, job, self.services.sources)
        except SourceImageError as e:
            invalid = InvalidRow(job.row_id, job.line, "images", str(e))
            await records.send(invalid_record(invalid, self.clock.now()))
            return None
