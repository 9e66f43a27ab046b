"""The per-row attempt loop a worker runs: wait for the shared rate gate and --rpm, take a
request slot, reserve the attempt's worst-case cost under the cap, send, act on the retry
policy's decision, and record the row's attempts and its final outcome (its images stored
first). What it shares with the rest of the run comes from the shell (``RunServices``) and
from the online executor (its slots, pacing and drain grace).
"""

from __future__ import annotations

import contextlib
import random

import anyio
import structlog
from aiolimiter import AsyncLimiter
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from pipeline.core.budget import attempt_cost, worst_case
from pipeline.core.models import effective_size
from pipeline.core.retry import Action, decide
from pipeline.core.types import InvalidRow, Job, Outcome, Status
from pipeline.plan.sources import SourceImageError
from pipeline.providers.base import PreparedRequest, Provider
from pipeline.providers.exchange import exchange
from pipeline.providers.http import HttpClient
from pipeline.run.control import Halt
from pipeline.run.executor import Record, RunServices
from pipeline.run.final import final_record
from pipeline.run.online.adaptive import AdaptiveLimit
from pipeline.run.online.grace import DrainGrace
from pipeline.run.online.pacing import RateGate
from pipeline.run.tiers import TierFallback
from pipeline.run.unusable import UnusableModels
from pipeline.store.ledger import LedgerRecord
from pipeline.store.records import (
    ABANDONED,
    CANCELLED,
    RowState,
    invalid_record,
)

log = structlog.get_logger("nanobatch")


class RowLoop:
    """Sends rows to their outcomes, one request per attempt; one instance serves every worker."""

    def __init__(
        self,
        services: RunServices,
        provider: Provider,
        *,
        adaptive: AdaptiveLimit,
        gate: RateGate,
        limiter: AsyncLimiter | None,
        grace: DrainGrace,
        models: UnusableModels,
        rng: random.Random,
    ) -> None:
        self.services = services
        self.provider = provider  # builds each request, reads each answer
        # The run's, shared with the shell and its writer.
        self.config = services.config
        self.clock = services.clock
        self.result = services.result
        self.sources = services.sources
        self.control = services.control
        self.spend = services.spend
        self.inflight = services.inflight
        # The online executor's, shared by its workers.
        self.adaptive = adaptive
        self.gate = gate
        self.limiter = limiter
        self.grace = grace
        self.models = models
        self.rng = rng
        self.tiers = TierFallback(self.config.retry.fallback, self.result)  # refused, moved

    async def work(
        self,
        client: HttpClient,
        jobs: MemoryObjectReceiveStream[Job],
        records: MemoryObjectSendStream[Record],
    ) -> None:
        """One worker: take rows from ``jobs`` one at a time until the stream ends."""
        async with jobs, records:
            async for job in jobs:
                if self.control.draining:
                    continue  # drain: rows left here stay pending for the next run
                await self._process(client, job, records)

    async def _process(
        self, client: HttpClient, job: Job, records: MemoryObjectSendStream[Record]
    ) -> None:
        """Send one row until it reaches an outcome and record it (unless the run stops first)."""
        try:
            request = await anyio.to_thread.run_sync(self._prepare, job)
        except SourceImageError as e:
            invalid = InvalidRow(job.row_id, job.line, "images", str(e))
            await records.send(invalid_record(invalid, self.clock.now()))
            return
        row = RowState(job, effective_size(job), route=self.config.provider)
        while True:
            await self.gate.wait(self.control)
            if self.limiter is not None:
                with self.grace.wait():  # a drain must not wait for --rpm tokens
                    await self.limiter.acquire()
            if self.control.draining:
                return  # not sent: the row stays pending for the next run
            if (moved := self.tiers.check(row.job)) is not None:  # its tier was refused
                fresh = await self._move(row, moved, records)
                if fresh is None:
                    return
                request = fresh
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
                decision = decide(outcome, row.retry, self.config.retry, self.rng, self.clock.now())
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
                now = self.clock.now()
                await records.send(
                    row.attempt_record(outcome, latency_ms, decision.wait_s, cost, now)
                )
                if decision.action is Action.FAIL_MODEL and self.models.found(job, outcome):
                    # The default model: no row can go on.
                    self.services.stop(self.models.stopping(job))
                    return
                if decision.action is Action.STOP_RUN:
                    self.services.stop(outcome)
                    return
                if decision.action not in (Action.RETRY, Action.FALL_BACK):
                    if decision.action is Action.FAIL_MODEL:
                        outcome = self.models.for_row(job)
                    assert decision.status is not None
                    await self._finish(row, records, request=request, outcome=outcome,
                                       status=decision.status, latency_ms=latency_ms)  # fmt: skip
            self.adaptive.on_answer(outcome)  # with the slot let go: what is borrowed is the burst
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
                self.gate.pause_until(self.clock.monotonic() + decision.wait_s)
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
        client: HttpClient,
        row: RowState,
        request: PreparedRequest,
        records: MemoryObjectSendStream[Record],
        slot: contextlib.AsyncExitStack,
    ) -> tuple[Outcome, float, float] | None:
        """One attempt: reserve its worst-case cost, take a slot (held by ``slot``), send,
        settle; the outcome, its latency and its cost. None if it was not sent (the cap, a
        drain) or was abandoned when a drain's grace ran out."""
        route, fallback = self.config.provider, self.config.retry.fallback
        reserved = worst_case(row.job, row.size, self.config.prices, route=route, fallback=fallback)
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
        row.started_at = self.clock.now()
        started = self.clock.monotonic()
        try:
            self.inflight.sent(row.job.row_id, row.attempts, row.started_at, reserved)
        except OSError as e:
            # A request a kill could leave unaccounted for is never sent.
            self.spend.settle(reserved, 0.0)
            row.attempts -= 1
            self.services.disk_trouble(e)
            return None
        self.result.requests += 1
        self.result.in_flight += 1
        try:
            with self.grace.flight() as flight:
                outcome = await exchange(self.provider, client, request)
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
        cost = attempt_cost(outcome, row.job, row.size, self.config.prices, route=route)
        self._charge(row, reserved, cost)
        return outcome, (self.clock.monotonic() - started) * 1000, cost

    async def _abandon(
        self,
        row: RowState,
        reserved: float,
        started: float,
        why: Outcome,
        records: MemoryObjectSendStream[Record],
    ) -> None:
        """Record an attempt given up before its answer (possibly billed, by the one rule)."""
        cost = attempt_cost(why, row.job, row.size, self.config.prices, route=self.config.provider)
        self._charge(row, reserved, cost)
        self.result.cancelled.append(row.job.row_id)
        latency_ms = (self.clock.monotonic() - started) * 1000
        await records.send(row.cancelled_record(latency_ms, self.clock.now(), cost, why))

    def _charge(self, row: RowState, reserved: float, cost: float) -> None:
        self.spend.settle(reserved, cost)
        row.cost_usd += cost
        self.result.spent_usd = self.spend.spent_usd

    def _prepare(self, job: Job) -> PreparedRequest:
        return self.provider.prepare(job, self.sources)

    async def _move(
        self, row: RowState, job: Job, records: MemoryObjectSendStream[Record]
    ) -> PreparedRequest | None:
        """Send the row as ``job`` (its fallback tier) from now on: its request made again
        (None: a source went bad meanwhile, and the row is recorded invalid)."""
        row.job, row.retry.sheds = job, 0
        try:
            return await anyio.to_thread.run_sync(self._prepare, job)
        except SourceImageError as e:
            invalid = InvalidRow(job.row_id, job.line, "images", str(e))
            await records.send(invalid_record(invalid, self.clock.now()))
            return None

    async def _record(
        self,
        row: RowState,
        *,
        request: PreparedRequest,
        outcome: Outcome,
        status: Status,
        latency_ms: float,
    ) -> LedgerRecord:
        return await final_record(
            self.services,
            row,
            fingerprint=request.fingerprint,
            outcome=outcome,
            status=status,
            latency_ms=latency_ms,
        )
