"""What a run did: counters the pool updates, summaries and progress views read."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from pipeline.core.clock import SYSTEM_CLOCK, Clock
from pipeline.core.types import Outcome
from pipeline.run.control import Halt


@dataclass(slots=True)
class RunResult:
    """What a run did, for the summary and the exit code."""

    by_status: Counter[str] = field(default_factory=Counter)
    by_reason: Counter[tuple[str, str]] = field(default_factory=Counter)
    to_do: int = 0  # rows this run expects to send (known before the first request)
    skipped: int = 0  # rows already done before this run
    changed: int = 0  # done rows sent again because their prompt, settings or photos changed
    requests: int = 0  # HTTP attempts sent
    retried: Counter[str] = field(default_factory=Counter)  # reasons of attempts sent again
    clock: Clock = field(default=SYSTEM_CLOCK, repr=False, compare=False)  # the run's
    started: float = math.nan  # on clock.monotonic; now when not given
    finished: float | None = None
    stopped: Outcome | None = None  # the API answer that stopped the run, if one did
    halt: Halt | None = None  # why the run stopped before the manifest was done
    spent_usd: float = 0.0  # by the price table, settled attempts of this run only
    spent_before_usd: float = 0.0  # what earlier runs recorded in the same output directory
    max_cost_usd: float | None = None  # --max-cost: a cap on the whole job, not on this run
    disk_error: str | None = None  # the write error that stopped the run (ENOSPC, EIO...)
    stored_bytes: int = 0  # image bytes written by this run
    unstored: int = 0  # answers received (and paid for) whose images could not be written
    unstored_bytes: int = 0
    unrecorded: int = 0  # outcomes whose ledger record could not be written (disk full)
    in_flight: int = 0  # gauges, for progress displays
    retrying: int = 0
    cancelled: list[str] = field(default_factory=list)  # rows abandoned mid-request (2nd Ctrl-C)
    # Known from the one pass over the manifest, for the closing message (start.left_after):
    manifest_rows: int = 0  # rows within --limit
    manifest_rows_all: int | None = None  # the whole file's, counted after a --limit run
    remaining_usd: float | None = None  # stopped by the cap: what the rows left should cost
    fell_back: int = 0  # rows resent at the --tier-fallback tier (shed too often, or refused)
    tiers_stopped: dict[str, str] = field(default_factory=dict)  # "flex for M" -> the answer
    # --mode batch: rows folded from batch jobs and sent online by the fallback (deadline, or
    # --fallback online), each with what it cost; jobs still live at Google when the run ended
    batch_rows: int = 0
    batch_usd: float = 0.0
    fallback_rows: int = 0
    fallback_usd: float = 0.0
    submitted_jobs: list[str] = field(default_factory=list)  # batch names, still running
    submitted_rows: int = 0  # rows those jobs hold: pending in the ledger, not lost
    # Each live job as Google last reported it (job id -> state and its batchStats counts):
    # the SDK drops these counts; the progress views show them
    batch_jobs: dict[str, dict[str, str | int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if math.isnan(self.started):
            self.started = self.clock.monotonic()

    @property
    def job_spent_usd(self) -> float:
        """Spend so far over every run in the output directory: what the cap counts."""
        return self.spent_before_usd + self.spent_usd

    @property
    def duration_s(self) -> float:
        return (self.finished or self.clock.monotonic()) - self.started
