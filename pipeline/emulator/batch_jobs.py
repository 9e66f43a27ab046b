"""A batch job and its timeline: state and counts as pure functions of the clock.

A job created at ``t0`` with a drawn delay ``D`` is PENDING for the first tenth of ``D``, then
RUNNING while its requests complete one by one at even intervals, in a seeded order, and ends
at ``t0 + D``. Its fate (drawn once per job) can change that: ``stuck`` stays PENDING until
cancelled; ``expire`` stays PENDING and ends EXPIRED at ``t0 + D``; ``fail`` runs without
completing anything and ends FAILED at ``t0 + D``. A cancel ends it at once (CANCELLED), with
the requests completed so far.

Nothing here is driven by a timer: every read asks "where is the job at time t", so a test's
fake clock moves jobs exactly as far as it is advanced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

from pipeline.emulator.batch_items import Item
from pipeline.emulator.batch_output import Rendering
from pipeline.emulator.batchspecs import BatchFault

PENDING_SHARE = 0.1


class State(StrEnum):
    """States as the Gemini API writes them (the SDK renames them ``JOB_STATE_*``)."""

    PENDING = "BATCH_STATE_PENDING"
    RUNNING = "BATCH_STATE_RUNNING"
    SUCCEEDED = "BATCH_STATE_SUCCEEDED"
    FAILED = "BATCH_STATE_FAILED"
    CANCELLED = "BATCH_STATE_CANCELLED"
    EXPIRED = "BATCH_STATE_EXPIRED"

    @property
    def terminal(self) -> bool:
        return self not in (State.PENDING, State.RUNNING)


@dataclass(eq=False)
class Job:
    """One batch job. The first block is fixed at creation; the second changes as it ends."""

    job_id: str
    model_id: str
    display_name: str
    input_file: str | None  # "files/..." for a file job; None for inline requests
    items: list[Item]
    order: list[int]  # indices of ``items`` in the order they complete
    created: float
    delay: float
    fate: BatchFault | None
    late_s: float  # how long after the end the output file stays unreadable
    output_id: str  # the output file's id (over 40 characters with ``long_id``)
    priority: str | None = None

    cancelled_at: float | None = None
    settled: bool = False  # billed and counted (once it is terminal)
    results: list[int] = field(default_factory=list)  # what it hands back, once settled
    rendering: Rendering | None = None  # its results being written, once settled
    # failures among the first k completed requests, for k = 0..n
    _failed_prefix: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        failed = [0]
        for index in self.order:
            failed.append(failed[-1] + (self.items[index].error is not None))
        self._failed_prefix = failed

    @property
    def name(self) -> str:
        return f"batches/{self.job_id}"

    @property
    def inline(self) -> bool:
        return self.input_file is None

    @property
    def running_from(self) -> float:
        return self.created + PENDING_SHARE * self.delay

    @property
    def end(self) -> float:
        return self.created + self.delay

    def ended_at(self) -> float | None:
        """When the job ended or will end; None while a stuck job waits for a cancel."""
        natural = None if self.fate is BatchFault.STUCK else self.end
        if self.cancelled_at is not None and (natural is None or self.cancelled_at < natural):
            return self.cancelled_at
        return natural

    def state(self, now: float) -> State:
        ended = self.ended_at()
        if ended is not None and now >= ended:
            if ended == self.cancelled_at:
                return State.CANCELLED
            if self.fate is BatchFault.EXPIRE:
                return State.EXPIRED
            return State.FAILED if self.fate is BatchFault.FAIL else State.SUCCEEDED
        if self.fate in (BatchFault.STUCK, BatchFault.EXPIRE) or now < self.running_from:
            return State.PENDING
        return State.RUNNING

    def completed(self, now: float) -> int:
        """How many requests have completed by ``now``."""
        if self.fate is not None:
            return 0
        ended = self.ended_at()
        horizon = now if ended is None else min(now, ended)
        n = len(self.items)
        if horizon >= self.end:
            return n
        if horizon < self.running_from:
            return 0
        share = (horizon - self.running_from) / (self.end - self.running_from)
        return min(n, math.floor(share * n + 1e-9))

    def counts(self, now: float) -> dict[str, int]:
        """batchStats: requests, and how many succeeded, failed, are pending."""
        done = self.completed(now)
        failed = self._failed_prefix[done]
        return {
            "requestCount": len(self.items),
            "successfulRequestCount": done - failed,
            "failedRequestCount": failed,
            "pendingRequestCount": len(self.items) - done,
        }

    def updated(self, now: float) -> float:
        """When the job last changed, as of ``now``."""
        ended = self.ended_at()
        if ended is not None and now >= ended:
            return ended
        done = self.completed(now)
        if done == 0:
            return self.running_from if self.state(now) is State.RUNNING else self.created
        span = self.end - self.running_from
        return self.running_from + span * done / len(self.items)

    def delivered(self, now: float) -> list[int]:
        """Indices of the requests whose results the job could hand back, in completion order:
        all of a SUCCEEDED job, the completed ones of a CANCELLED job, none otherwise (whether
        a cancelled job's are handed back and billed is the engine's ``--batch-cancel-bills``)."""
        state = self.state(now)
        if state is State.SUCCEEDED:
            return self.order
        if state is State.CANCELLED:
            return self.order[: self.completed(now)]
        return []
