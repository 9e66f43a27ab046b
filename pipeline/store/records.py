"""The records a row leaves: one per HTTP attempt, and its ledger row. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from pipeline.core.budget import possibly_billed
from pipeline.core.retry import Budget as RetryBudget
from pipeline.core.types import Delivery, InvalidRow, Job, Outcome, OutcomeKind, Status
from pipeline.store.diskspace import describe
from pipeline.store.ledger import AttemptRecord, LedgerRecord
from pipeline.store.storage import StoredImage


@dataclass(slots=True)
class RowState:
    """One row in a worker: its attempts, retry allowance and what it has cost so far."""

    job: Job  # as it is sent now: at its fallback tier once it fell back
    size: str  # the image size it will get (for prices)
    route: str | None = None  # --provider (the ledger's ``provider``)
    retry: RetryBudget = field(default_factory=RetryBudget)
    attempts: int = 0
    cost_usd: float = 0.0
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def attempt_record(
        self,
        outcome: Outcome,
        latency_ms: float,
        wait_s: float,
        cost_usd: float,
        finished_at: datetime,
    ) -> AttemptRecord:
        return AttemptRecord(
            row_id=self.job.row_id,
            attempt=self.attempts,
            started_at=self.started_at,
            finished_at=finished_at,
            latency_ms=round(latency_ms, 1),
            http_status=outcome.http_status,
            outcome=outcome.kind.value,
            reason=outcome.reason,
            wait_s=round(wait_s, 3),
            possibly_billed=possibly_billed(outcome),
            cost_usd=round(cost_usd, 6),
            tier=(outcome.tier or self.job.tier).value,
        )

    def cancelled_record(
        self, latency_ms: float, finished_at: datetime, cost_usd: float, why: Outcome | None = None
    ) -> AttemptRecord:
        """An attempt given up before its answer: ``CANCELLED`` or ``ABANDONED``."""
        why = why or CANCELLED
        record = self.attempt_record(why, latency_ms, 0.0, cost_usd, finished_at)
        # No answer came, so no status and no tier of the server's: the one asked.
        return replace(record, http_status=None, outcome="cancelled", tier=self.job.tier.value)


# An attempt abandoned mid-flight (a second Ctrl-C): the server may still finish and bill it.
CANCELLED = Outcome(OutcomeKind.TRANSIENT, "CANCELLED", delivery=Delivery.NO_ANSWER)
# One still in flight when a drain's --drain-grace ran out: likewise.
ABANDONED = Outcome(OutcomeKind.TRANSIENT, "ABANDONED", delivery=Delivery.NO_ANSWER)


def ledger_record(
    row: RowState,
    *,
    fingerprint: str,
    outcome: Outcome,
    status: Status,
    latency_ms: float,
    stored: list[StoredImage],
    finished_at: datetime,
) -> LedgerRecord:
    """The row's ledger row once it reached ``status``."""
    job = row.job
    first = stored[0] if stored else None
    return LedgerRecord(
        row_id=job.row_id,
        line=job.line,
        status=status.value,
        reason=outcome.reason,
        model=job.model,
        prompt=job.prompt,
        attempts=row.attempts,
        http_status=outcome.http_status,
        image_size=job.image_size,
        aspect_ratio=job.aspect_ratio,
        output_paths=[s.rel_path for s in stored],
        sha256=[s.sha256 for s in stored],
        width=first.width if first else None,
        height=first.height if first else None,
        mime_type=first.mime_type if first else None,
        text=outcome.text,
        prompt_tokens=outcome.usage.prompt_tokens,
        output_tokens=outcome.usage.output_tokens,
        thoughts_tokens=outcome.usage.thoughts_tokens,
        latency_ms=round(latency_ms, 1),
        finished_at=finished_at,
        error=outcome.message if status is not Status.SUCCEEDED else None,
        fingerprint=fingerprint,
        metadata=job.metadata,
        cost_usd=round(row.cost_usd, 6),
        provider=row.route,
        tier=(outcome.tier or job.tier).value,
        tier_reported=outcome.tier is not None,
    )


def invalid_record(item: InvalidRow, finished_at: datetime) -> LedgerRecord:
    """The ledger row of a row that could not be sent: it cost nothing."""
    return LedgerRecord(
        finished_at=finished_at,
        row_id=item.row_id,
        line=item.line,
        status=Status.INVALID.value,
        reason=f"INVALID_{item.field.upper()}",
        model="",
        prompt=item.prompt,
        error=item.reason,
        metadata=item.metadata,
    )


def unstored(outcome: Outcome, stem: str, error: OSError) -> Outcome:
    """The outcome of an answer whose images could not be written: a failure, paid for."""
    return replace(
        outcome,
        kind=OutcomeKind.ROW_ERROR,
        reason="WRITE_FAILED",
        message=f"the image was received (and billed) but could not be written as "
        f"images/{stem}: {describe(error)}",
    )
