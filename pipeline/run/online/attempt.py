"""One online attempt of one row, with its money: reserve the attempt's worst-case cost under
the cap, take a request slot, note it in flight, send it through the provider, and settle what
it cost. An attempt given up before its answer (a second Ctrl-C, a drain's grace run out) is
charged at its worst case and recorded as such: the server may still finish and bill it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from pipeline.core.budget import attempt_cost, worst_case
from pipeline.core.types import Outcome
from pipeline.providers.base import PreparedRequest, Provider
from pipeline.providers.exchange import exchange
from pipeline.providers.http import HttpClient
from pipeline.run.control import Halt
from pipeline.run.executor import Records, RunServices
from pipeline.run.online.adaptive import Holding
from pipeline.store.records import ABANDONED, CANCELLED, RowState

if TYPE_CHECKING:  # the executor builds the senders: no import cycle at run time
    from pipeline.run.online.executor import OnlineExecutor


class AttemptSender:
    """Sends single attempts and settles them; one instance serves every worker."""

    def __init__(self, services: RunServices, provider: Provider, pool: OnlineExecutor) -> None:
        self.services = services
        self.provider = provider
        self.config = services.config
        self.clock = services.clock
        self.result = services.result
        self.control = services.control
        self.spend = services.spend
        self.pool = pool  # request slots and the drain's grace, shared by the workers

    async def send(
        self,
        client: HttpClient,
        row: RowState,
        request: PreparedRequest,
        records: Records,
        slot: Holding,
    ) -> tuple[Outcome, float, float] | None:
        """One attempt: reserve its worst-case cost, take a slot (held by ``slot``), send,
        settle; the outcome, its latency and its cost. None if it was not sent (the cap, a
        drain) or was abandoned when a drain's grace ran out."""
        route, fallback = self.config.provider, self.config.retry.fallback
        reserved = worst_case(row.job, row.size, self.config.prices, route=route, fallback=fallback)
        if not self.spend.reserve(reserved):
            self.control.drain(Halt.COST_CAP)
            return None
        await slot.take(self.pool.adaptive.slot(request.timeout_s))
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
            self.services.inflight.sent(row.job.row_id, row.attempts, row.started_at, reserved)
        except OSError as e:
            # A request a kill could leave unaccounted for is never sent.
            self.spend.settle(reserved, 0.0)
            row.attempts -= 1
            self.services.disk_trouble(e)
            return None
        self.result.requests += 1
        self.result.in_flight += 1
        try:
            with self.pool.grace.flight() as flight:
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
        records: Records,
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
