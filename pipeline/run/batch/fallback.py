"""The way out of a batch: rows sent online, one request each, when their batch job cannot
deliver them in time (``--deadline``) or at all (failed, expired or cancelled, with
``--fallback online``), and the deadline arithmetic that says when.

The batch executor hands ``send_online`` the jobs of rows that are in no live job any more
(their job is terminal and whatever it produced is folded), so no row is ever in a live job
and in flight online at once. They go through an ``OnlineExecutor`` with the run's services:
the same spending cap (a row the cap cannot afford is not sent, and the run stops: the cap
wins over the deadline), the same drain, the same records to the same ledger writer.

Deadline rule: at ``deadline - margin`` every unfinished job is cancelled and its rows, once
terminal and folded, go online; a run that starts after that moment sends its rows online
at once rather than into a job that could not finish in time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream

from pipeline.core.config import RunConfig
from pipeline.core.types import Job, Tier
from pipeline.providers.base import Provider
from pipeline.providers.http import ClientPool
from pipeline.run.executor import Record, Records, RunServices
from pipeline.run.online import OnlineExecutor
from pipeline.store.ledger import LedgerRecord

log = structlog.get_logger("nanobatch")

ONLINE_TIERS = frozenset({Tier.STANDARD, Tier.FLEX, Tier.PRIORITY})  # served by a plain call


def fallback_at(config: RunConfig) -> datetime | None:
    """When the rows of unfinished jobs leave the batch: ``--deadline`` minus
    ``--fallback-margin`` (None: no deadline, jobs may take as long as Google does)."""
    if config.deadline is None:
        return None
    return config.deadline - timedelta(seconds=config.fallback_margin_s)


def seconds_to_fallback(config: RunConfig, now: datetime | None = None) -> float:
    """Seconds until ``fallback_at`` on the run's clock (0: due now; inf: no deadline)."""
    at = fallback_at(config)
    if at is None:
        return math.inf
    return max(0.0, (at - (now or config.clock.now())).total_seconds())


def fallback_due(config: RunConfig, now: datetime | None = None) -> bool:
    """Whether unfinished jobs must be cancelled and their rows sent online now."""
    return seconds_to_fallback(config, now) == 0.0


def online_tier(job: Job, provider: Provider) -> Tier:
    """The tier a row goes online at: its own (the run's ``--tier``, or its tier column) where
    the route serves it, else standard. Flex is half price but may hold a request ~15 min: the
    margin must cover that."""
    tier = job.tier
    if tier in ONLINE_TIERS and tier in provider.capabilities.tiers:
        return tier
    return Tier.STANDARD


@dataclass(slots=True)
class OnlineSent:
    """What one ``send_online`` recorded: rows by their final record, and what they cost."""

    rows: int = 0
    cost_usd: float = 0.0
    by_status: dict[str, int] = field(default_factory=dict)


async def send_online(
    services: RunServices,
    clients: ClientPool,
    provider: Provider,
    jobs: Sequence[Job],
    records: Records,
) -> OnlineSent:
    """Send ``jobs`` online, one request each, and hand their records to ``records`` (the
    run's writer stream, left open: the caller owns it). Returns once every row is recorded,
    or the run drained (unsent rows stay pending for the next run). Counts them in the run's
    ``fallback_rows`` and ``fallback_usd``."""
    sent = OnlineSent()
    if not jobs:
        return sent
    executor = OnlineExecutor(services.config, clients, provider)
    size = max(1, min(len(jobs), executor.workers))
    job_send, job_recv = anyio.create_memory_object_stream[Job](size)
    mine_send, mine_recv = anyio.create_memory_object_stream[Record](size)
    log.info("batch.fallback_online", rows=len(jobs))

    async def feed() -> None:
        async with job_send:
            for job in jobs:
                if services.control.draining:
                    return  # a drain: rows not handed over stay pending
                try:
                    await job_send.send(replace(job, tier=online_tier(job, provider)))
                except anyio.BrokenResourceError:
                    return  # the executor stopped taking rows (a drain)

    async def forward(stream: MemoryObjectReceiveStream[Record]) -> None:
        async with stream:
            async for record in stream:
                if isinstance(record, LedgerRecord):
                    _count(services, sent, record)
                await records.send(record)

    async with anyio.create_task_group() as tg:
        tg.start_soon(forward, mine_recv)
        tg.start_soon(feed)
        await executor.execute(services, job_recv, mine_send)
    return sent


def _count(services: RunServices, sent: OnlineSent, record: LedgerRecord) -> None:
    """One row's final record: into this call's figures and the run's."""
    cost = record.cost_usd or 0.0
    sent.rows += 1
    sent.cost_usd += cost
    sent.by_status[record.status] = sent.by_status.get(record.status, 0) + 1
    services.result.fallback_rows += 1
    services.result.fallback_usd += cost
