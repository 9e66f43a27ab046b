"""The online executor: one request per row, sent by a pool of workers.

    jobs --> N workers (each a ``RowLoop``: one row at a time) --> records

Requests in flight are bounded by an adaptive (AIMD) capacity limiter (``adaptive``) and, with
--rpm, a smooth rate limiter; a 429's wait pauses every worker (``pacing``); a drain gives
requests in flight ``--drain-grace`` seconds (``grace``); a model no row can use fails its rows
without sending them (``unusable``).
"""

from __future__ import annotations

import random

import anyio

from pipeline.core.config import RunConfig
from pipeline.core.models import resolve_model
from pipeline.core.types import Outcome
from pipeline.providers.base import Provider
from pipeline.providers.http import ClientPool
from pipeline.run.executor import Jobs, Records, RunServices
from pipeline.run.online.adaptive import AdaptiveLimit
from pipeline.run.online.grace import DrainGrace
from pipeline.run.online.pacing import RateGate, smooth_limiter
from pipeline.run.online.rowloop import RowLoop
from pipeline.run.unusable import UnusableModels

# Rows in progress per request slot. Most of a row's life under faults is spent waiting (a
# 429's delay, a backoff, the shared pause); a waiting row holds no slot, so twice as many
# rows as slots keep the slots busy. Requests in flight never pass --concurrency.
ROWS_PER_SLOT = 2


def workers(config: RunConfig) -> int:
    """Rows in progress at once (each worker holds one)."""
    return ROWS_PER_SLOT * config.concurrency


class OnlineExecutor:
    """Sends each row as its own request (``executor.Executor``)."""

    def __init__(self, config: RunConfig, clients: ClientPool, provider: Provider) -> None:
        self.clients = clients
        self.provider = provider
        self.workers = workers(config)
        self.adaptive = AdaptiveLimit(config.concurrency)  # request slots, shared by workers
        self.gate = RateGate(config.clock)  # the server's "wait", for every worker
        self.limiter = smooth_limiter(config.rpm)  # --rpm
        self.grace = DrainGrace(config.drain_grace_s)
        self.models = UnusableModels(resolve_model(config.model)[0])
        self.rng = random.Random()  # backoff jitter

    async def execute(self, services: RunServices, jobs: Jobs, records: Records) -> None:
        """Run the workers until the job stream ends (or the run drains)."""
        loop = RowLoop(services, self.provider, self)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.grace.watch, services.control)
            async with anyio.create_task_group() as pool:
                with jobs, records:  # closed once every worker holds its own clones
                    for index in range(self.workers):
                        client = self.clients.for_worker(index)
                        pool.start_soon(loop.work, client, jobs.clone(), records.clone())
            tg.cancel_scope.cancel()  # the grace watcher: nothing is in flight any more

    def stopped(self) -> Outcome | None:
        """Every model this run used proved unusable: the run stops (exit 3)."""
        return self.models.all_unusable()
