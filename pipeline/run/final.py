"""A row's final record, whichever executor reached it: its images stored first (with the
provenance of the request that made them), then its ledger record.

The provenance record carries what the answer was billed, so that images a kill left without
their record are adopted at that cost. An answer received is paid for. When its images cannot
be written, the row fails with
``WRITE_FAILED`` (its cost stays on it) and the run goes on, unless the disk itself is the
trouble (the disk guard then drains the run).
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from pipeline.core.types import Outcome, Status
from pipeline.run.executor import RunServices
from pipeline.store import provenance
from pipeline.store.ledger import LedgerRecord
from pipeline.store.records import RowState, ledger_record, unstored
from pipeline.store.storage import StoredImage


async def final_record(
    services: RunServices,
    row: RowState,
    *,
    fingerprint: str,
    outcome: Outcome,
    status: Status,
    latency_ms: float,
    tier: str | None = None,
    batch_job: str | None = None,
) -> LedgerRecord:
    """Store a succeeded row's images, then make its ledger record (for the writer).
    ``tier``/``batch_job``: a batch job's result (the ledger's tier and job)."""
    job = row.job
    stored: list[StoredImage] = []
    tier = tier or (outcome.tier or job.tier).value
    if status is Status.SUCCEEDED:
        # With the record of the request that made them, and what it cost, written first.
        write = partial(
            provenance.store,
            journal=services.provenance,
            row_id=job.row_id,
            fingerprint=fingerprint,
            cost_usd=round(row.cost_usd, 6),
            tier=tier,
            batch_job=batch_job,
        )
        written = await services.disk.store(job.output_stem, outcome.images, write)
        if isinstance(written, OSError):
            result = services.result
            result.unstored += 1
            result.unstored_bytes += sum(i.size for i in outcome.images)
            status = Status.FAILED
            outcome = unstored(outcome, job.output_stem, written)
        else:
            stored = written
    record = ledger_record(
        row,
        finished_at=services.clock.now(),
        fingerprint=fingerprint,
        outcome=outcome,
        status=status,
        latency_ms=latency_ms,
        stored=stored,
    )
    return record if batch_job is None else replace(record, tier=tier, batch_job=batch_job)
