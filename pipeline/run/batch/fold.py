"""A finished job's results into the ledger: downloaded to disk as a stream (resumed where an
earlier attempt stopped), then read back one line at a time, each line joined to its row by
key and recorded through the same path as an online answer (images stored first, then the
record; ledger ``tier`` = ``batch``, ``batch_job`` = the job's batch name), at the batch price.

A line that cannot be read, whose key matches no row of the job, or that repeats a key, is
kept in ``DIR/.batch/<job>.bad.jsonl`` for inspection, never dropped silently. A row the
results do not answer (no line, or a line saying "try again": a transient error or a rate
limit) is handed back unfinished: the caller resubmits it, sends it online, or fails it
(``fail``). Only rows pending in this run are recorded: a row a crashed run already folded is
done, and a row a later job holds is that job's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import IO

import anyio
import structlog

from pipeline.core.prices import PriceTable
from pipeline.core.types import Delivery, Outcome, OutcomeKind, Status
from pipeline.providers.batchapi import RemoteJob, ResultLine, ResultsNotReady
from pipeline.run.batch.phases import checkpoint
from pipeline.run.batch.requestfile import RowEntry, bad_lines_path, read_rows, results_path
from pipeline.run.batch.steps import GONE, JobSteps
from pipeline.run.executor import Durable, Records
from pipeline.run.final import final_record
from pipeline.store.attempts import batch_attempts
from pipeline.store.bookjob import BookJob, Phase
from pipeline.store.ledger import AttemptRecord
from pipeline.store.records import RowState

log = structlog.get_logger("nanobatch")

BATCH_TIER = "batch"  # the ledger's tier for rows a batch job answered
MISSING = "MISSING_FROM_RESULTS"


@dataclass(slots=True)
class Folded:
    """What folding one job gave."""

    unfinished: list[tuple[RowEntry, Outcome]] = field(default_factory=list)
    recorded: int = 0
    cost_usd: float = 0.0  # what this run's records of it cost (its attempts now recorded)
    bad_lines: int = 0
    # Rows whose attempt a fold that a kill cut short already recorded (not recorded twice).
    attempted: set[str] = field(default_factory=set)


def line_status(outcome: Outcome) -> Status | None:
    """A result line's status; None: not finished (a transient error, a rate limit)."""
    match outcome.kind:
        case OutcomeKind.SUCCESS:
            return Status.SUCCEEDED
        case OutcomeKind.REFUSAL:
            return Status.REFUSED
        case OutcomeKind.TRANSIENT | OutcomeKind.RATE_LIMIT:
            return None
        case _:
            return Status.FAILED


def batch_cost(outcome: Outcome, entry: RowEntry, prices: PriceTable, route: str) -> float:
    """What a result line costs at the batch price: an image's for a success, the refusal
    price for a refusal, nothing for an error line (Google bills no failed request)."""
    if outcome.usage.cost_usd is not None:
        return outcome.usage.cost_usd
    job = entry.job
    inputs = prices.input_cost(job.model, len(job.images), batch=True, route=route)
    if outcome.kind is OutcomeKind.SUCCESS:
        images = max(1, len(outcome.images) or len(outcome.image_urls))
        return images * prices.per_image(job.model, entry.size, batch=True, route=route) + inputs
    if outcome.kind is OutcomeKind.REFUSAL:
        return prices.refusal(route) + inputs
    return 0.0


EXPIRED = "RESULTS_EXPIRED"  # a finished job's answers, billed, lost with its result file


def not_answered(state: str, batch_name: str | None, why: str) -> Outcome:
    """The outcome of a row its job did not answer."""
    return Outcome(
        OutcomeKind.ROW_ERROR,
        MISSING if state == "SUCCEEDED" else f"BATCH_{state}",
        message=f"batch job {batch_name} ended {state}: {why}",
        delivery=Delivery.ERROR,
    )


@dataclass
class Folder(JobSteps):
    """Downloads and folds the jobs of one run."""

    records: Records
    # Jobs whose results were on disk when the run began: a kill may have cut their fold short.
    resumed: set[str] = field(init=False)

    def __post_init__(self) -> None:
        self.resumed = {j.job_id for j in self.book.live() if j.phase is Phase.DOWNLOADED}

    async def download(self, job: BookJob, remote: RemoteJob) -> bool:
        """The job's results on disk (True), or not readable yet (False: poll again)."""
        dest = self.out_dir / results_path(job.job_id)
        try:
            size = await self.calls.do(
                lambda: self.route.download_results(self.client, remote, dest)
            )
        except ResultsNotReady:
            return False
        checkpoint("downloading")
        await self.journal(job, Phase.DOWNLOADED, path=results_path(job.job_id), bytes=size)
        return True

    async def fold(self, job: BookJob, pending: Callable[[str], bool]) -> Folded:
        """Record every pending row the job's results answer; the rest come back unfinished."""
        rows = {e.job.row_id: e for e in await anyio.to_thread.run_sync(self._rows, job)}
        folded, seen = Folded(), set[str]()
        if job.job_id in self.resumed and job.created_at is not None:
            since = job.created_at
            folded.attempted = await anyio.to_thread.run_sync(
                batch_attempts, self.out_dir, set(rows), since
            )
        results = self.out_dir / job.results_file if job.results_file else None
        if results is not None and results.exists():
            source = await anyio.to_thread.run_sync(results.open, "rb")
            with source:
                while (item := await anyio.to_thread.run_sync(self._next, source)) is not None:
                    raw, line = item
                    entry = rows.get(line.key) if line.key is not None else None
                    if entry is None or line.key in seen:
                        folded.bad_lines += 1
                        await anyio.to_thread.run_sync(self._keep, job, raw)
                        continue
                    assert line.key is not None
                    seen.add(line.key)
                    if pending(line.key):
                        await self._one(job, entry, line.outcome, folded)
        state = job.state or "UNKNOWN"
        answered = results is not None and results.exists()  # else: gone past its 48 hours
        why = ("no result for this row" if answered else "its job's results are gone") + (
            f" ({folded.bad_lines} unreadable lines kept in {bad_lines_path(job.job_id)})"
            if folded.bad_lines
            else ""
        )
        for row_id, entry in rows.items():
            if row_id not in seen and pending(row_id):
                missing = not_answered(state, job.batch_name, why)
                if state == "SUCCEEDED" and answered:
                    await self.record(job, entry, missing, Status.FAILED, folded)
                    continue
                if state == "SUCCEEDED":  # answered and billed, its answer lost with the file
                    missing = replace(missing, reason=EXPIRED, delivery=Delivery.NO_ANSWER)
                    await self._lost(job, entry, missing, folded)
                elif state == GONE:  # sent, and how far the job got before it went is unknown
                    missing = replace(missing, delivery=Delivery.NO_ANSWER)
                    await self._lost(job, entry, missing, folded)
                folded.unfinished.append((entry, missing))
        if folded.bad_lines:
            log.warning("batch.bad_lines", job=job.job_id, lines=folded.bad_lines,
                        kept=bad_lines_path(job.job_id))  # fmt: skip
        return folded

    async def _one(self, job: BookJob, entry: RowEntry, outcome: Outcome, folded: Folded) -> None:
        status = line_status(outcome)
        if status is None:
            folded.unfinished.append((entry, outcome))
            return
        await self.record(job, entry, outcome, status, folded)

    async def _lost(self, job: BookJob, entry: RowEntry, outcome: Outcome, folded: Folded) -> None:
        """The attempt of a row Google may have billed and whose answer no one can read any
        more (its job's results expired, or the job is gone): recorded at the most it can have
        cost, so the spend (and --max-cost) counts it; the row itself is sent again."""
        config = self.services.config
        if entry.job.row_id in folded.attempted:
            return  # a fold a kill cut short recorded it already
        cost = config.prices.worst_case(entry.job.model, entry.size, len(entry.job.images),
                                        batch=True, route=config.provider)  # fmt: skip
        _, attempt, _ = self._attempt(job, entry, outcome, cost)
        await self.records.send(attempt)
        folded.cost_usd += cost

    def _attempt(
        self, job: BookJob, entry: RowEntry, outcome: Outcome, cost: float
    ) -> tuple[RowState, AttemptRecord, float]:
        """A row's state, its batch attempt's record (``cost``) and the attempt's latency:
        from the job's creation to now."""
        row = RowState(entry.job, entry.size, route=self.services.config.provider)
        row.attempts, row.cost_usd = job.round + 1, cost
        now = self.services.clock.now()
        row.started_at = job.created_at or now
        latency_ms = max(0.0, (now - row.started_at).total_seconds() * 1000)
        attempt = row.attempt_record(outcome, latency_ms, 0.0, cost, now)
        return row, replace(attempt, tier=BATCH_TIER), latency_ms

    async def record(
        self, job: BookJob, entry: RowEntry, outcome: Outcome, status: Status, folded: Folded
    ) -> None:
        """One row's attempt and final records (its images stored first), at the batch price."""
        services, config = self.services, self.services.config
        cost = batch_cost(outcome, entry, config.prices, config.provider)
        row, attempt, latency_ms = self._attempt(job, entry, outcome, cost)
        with anyio.CancelScope(shield=True):  # paid for: stored and recorded whole
            record = await final_record(
                services,
                row,
                fingerprint=entry.fingerprint,
                outcome=outcome,
                status=status,
                latency_ms=latency_ms,
                tier=BATCH_TIER,
                batch_job=job.batch_name,
            )
            if entry.job.row_id not in folded.attempted:
                await self.records.send(attempt)
                folded.cost_usd += cost  # else counted already, in the spend this run began with
            await self.records.send(record)
        folded.recorded += 1
        services.result.requests += 1
        checkpoint("folding")

    async def folded(self, job: BookJob) -> bool:
        """Journal ``job`` folded once every record sent for it is durable: a kill before
        then leaves it to be folded again (its rows neither lost nor sent again). False: the
        disk refused them (the job stays unfolded; the next run folds it again)."""
        mark = Durable()
        await self.records.send(mark)
        await mark.written.wait()
        if mark.ok:
            await self.journal(job, Phase.FOLDED)
        return mark.ok

    def _rows(self, job: BookJob) -> list[RowEntry]:
        return list(read_rows(self.out_dir, job.job_id))

    def _next(self, source: IO[bytes]) -> tuple[bytes, ResultLine] | None:
        while raw := source.readline():
            if raw.strip():
                return raw, self.route.read_result_line(raw)
        return None

    def _keep(self, job: BookJob, raw: bytes) -> None:
        with open(self.out_dir / bad_lines_path(job.job_id), "ab") as f:
            f.write(raw if raw.endswith(b"\n") else raw + b"\n")
