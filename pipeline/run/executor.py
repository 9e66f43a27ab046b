"""The executor seam: what the run shell hands an executor, and what it gets back.

    shell: producer --(jobs)--> executor --(records)--> writer (the one ledger writer)

An executor turns planned jobs into ledger records. The online executor (``run.online``) sends
one request per row; a batch executor would collect rows into jobs at the provider and fold
their results. The shell does not know which: it hands every executor the same three things:

- a receive stream of jobs (bounded: the producer waits while the executor is busy), closed
  by the producer once the plan is exhausted or the run drains;
- a send stream of records (``Record``), read by the shell's writer, which makes them durable
  in order; an executor records an image's row only after ``services.disk`` stored the image,
  and sends a ``Durable`` mark to learn when the records it sent before are written;
- the run's shared services (``RunServices``): config, counters, the stop control, the
  spending cap, the source cache, the in-flight notes, the disk guard, and the two callbacks
  that stop a run (``stop`` for a run-level API answer, ``disk_trouble`` for a write error).

An executor owns both streams once handed them: it closes them when it returns. It returns
when the job stream ends, or early when the run drains: then it may close the job stream
before it ends (the producer stops feeding) and rows it has not started stay pending for the
next run. Afterwards the shell asks it once for a verdict (``stopped``): a reason to
stop the run that only the whole run can show (every model it used proved unusable).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from pipeline.core.budget import SpendingCap
from pipeline.core.config import RunConfig
from pipeline.core.types import Job, Outcome
from pipeline.plan.done import DoneRows
from pipeline.plan.sources import SourceCache
from pipeline.run.control import Halt, RunControl
from pipeline.run.result import RunResult
from pipeline.store.diskspace import DiskGuard, default_headroom, describe
from pipeline.store.inflight import InFlight
from pipeline.store.ledger import AttemptRecord, LedgerRecord
from pipeline.store.provenance import ProvenanceJournal

log = structlog.get_logger("nanobatch")


@dataclass(eq=False, slots=True)
class Durable:
    """A mark in the records stream: the writer sets ``written`` once every record sent before
    it was appended (``ok``; False: the disk refused them, they stay pending)."""

    written: anyio.Event = field(default_factory=anyio.Event)
    ok: bool = False


Record = LedgerRecord | AttemptRecord | Durable  # what executors hand to the ledger writer
Jobs = MemoryObjectReceiveStream[Job]  # the producer's jobs, as an executor reads them
Records = MemoryObjectSendStream[Record]  # to the ledger writer


class RunServices:
    """What one run shares between its shell and its executor (one instance per run)."""

    def __init__(self, config: RunConfig, provenance: ProvenanceJournal | None = None) -> None:
        self.config = config  # the shell replaces it once the folder's id scheme is settled
        self.clock = config.clock  # the run's one clock: every wait, deadline and record time
        # counters, progress views
        self.result = RunResult(clock=self.clock, max_cost_usd=config.max_cost_usd)
        self.control = RunControl(self.clock)  # drain / cancel, shared by every task of the run
        self.spend = SpendingCap(config.max_cost_usd)  # reserve before send, settle after
        self.sources = SourceCache()  # source images, read once per run
        self.inflight = InFlight(config.out_dir)  # attempts noted before they are sent
        # What made each stored image: the ledger's, which makes it durable before records.
        self.provenance = provenance or ProvenanceJournal(config.out_dir)
        self.done: DoneRows | None = None  # the ledger's finished rows, once the shell planned
        headroom = config.disk_headroom_bytes
        self.disk = DiskGuard(  # stores images; its trouble drains the run
            config.out_dir,
            default_headroom(config.concurrency) if headroom is None else headroom,
            self.disk_trouble,
        )

    def disk_trouble(self, error: OSError) -> None:
        """The output disk failed a write: drain, and say why in the summary."""
        self.result.disk_error = describe(error)
        self.control.drain(Halt.DISK_FULL)

    def stop(self, outcome: Outcome) -> None:
        """A run-level answer (bad key, no quota, the default model unknown): drain, exit 3."""
        if not self.control.draining:
            self.result.stopped = outcome
            log.error("run.stopping", reason=outcome.reason, http_status=outcome.http_status)
        self.control.drain(Halt.API)


class Executor(Protocol):
    """Turns jobs into ledger records; the run shell runs exactly one per run."""

    async def execute(self, services: RunServices, jobs: Jobs, records: Records) -> None:
        """Process jobs until the stream ends or the run drains; close both streams."""
        ...

    def stopped(self) -> Outcome | None:
        """After ``execute``: why the run must stop, found only at its end; None: it need not."""
        ...
