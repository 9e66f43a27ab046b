"""The ledger's columns: the Parquet schemas of ``ledger.parquet`` and ``attempts.parquet``
and the records written to them. The names are an external interface (scripts and users read
the files): add a column, never rename one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa

# 2: provider, tier, tier_reported (ledger) and tier (attempts); a version-1 file reads with
# those columns null. batch_job (ledger) came later within version 2: a file without it reads
# it as null (no version bump: it adds a column, and nothing older misreads a newer file).
LEDGER_VERSION = "2"

SCHEMA = pa.schema(
    [
        ("row_id", pa.string()),
        ("line", pa.int64()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("http_status", pa.int32()),
        ("attempts", pa.int32()),
        ("model", pa.string()),
        ("image_size", pa.string()),
        ("aspect_ratio", pa.string()),
        ("output_paths", pa.list_(pa.string())),
        ("sha256", pa.list_(pa.string())),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("mime_type", pa.string()),
        ("text", pa.string()),
        ("prompt_tokens", pa.int32()),
        ("output_tokens", pa.int32()),
        ("thoughts_tokens", pa.int32()),
        ("latency_ms", pa.float64()),
        ("finished_at", pa.timestamp("ms", tz="UTC")),
        ("error", pa.string()),
        ("fingerprint", pa.string()),
        ("prompt", pa.string()),
        ("metadata", pa.string()),
        ("cost_usd", pa.float64()),
        ("provider", pa.string()),
        ("tier", pa.string()),
        ("tier_reported", pa.bool_()),
        ("batch_job", pa.string()),
    ],
    metadata={"nanobatch.ledger_version": LEDGER_VERSION},
)


ATTEMPTS_SCHEMA = pa.schema(
    [
        ("row_id", pa.string()),
        ("attempt", pa.int32()),
        ("started_at", pa.timestamp("ms", tz="UTC")),
        ("finished_at", pa.timestamp("ms", tz="UTC")),
        ("latency_ms", pa.float64()),
        ("http_status", pa.int32()),
        ("outcome", pa.string()),
        ("reason", pa.string()),
        ("wait_s", pa.float64()),
        ("possibly_billed", pa.bool_()),
        ("cost_usd", pa.float64()),
        ("tier", pa.string()),
    ],
    metadata={"nanobatch.ledger_version": LEDGER_VERSION},
)


# The two records are not frozen: a frozen dataclass sets each field through
# ``object.__setattr__``, 3.2 us for 20 fields against 0.45 us (Python 3.11), and a row makes
# one of each per attempt. Nothing changes a record once made; each is written and dropped.
@dataclass(slots=True)
class LedgerRecord:
    """One row of the ledger; field names are the column names (an external interface)."""

    row_id: str
    line: int
    status: str
    reason: str
    model: str
    prompt: str
    attempts: int = 0
    http_status: int | None = None
    image_size: str | None = None
    aspect_ratio: str | None = None
    output_paths: list[str] = field(default_factory=list)
    sha256: list[str] = field(default_factory=list)
    width: int | None = None
    height: int | None = None
    mime_type: str | None = None
    text: str | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    thoughts_tokens: int | None = None
    latency_ms: float | None = None
    finished_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    error: str | None = None
    fingerprint: str | None = None
    metadata: str | None = None  # the manifest row's other columns, as a JSON object
    cost_usd: float | None = None  # by the price table, over all of the row's attempts
    provider: str | None = None  # the route it was sent through (--provider)
    tier: str | None = None  # the tier that served it if the answer said, else the one asked
    tier_reported: bool | None = None  # whether the answer said which tier served it
    batch_job: str | None = None  # the batch job ("batches/...") that answered it, if one did


@dataclass(slots=True)
class AttemptRecord:
    """One HTTP attempt, for the post-mortem of a night (``attempts.parquet``)."""

    row_id: str
    attempt: int
    started_at: datetime
    finished_at: datetime
    latency_ms: float
    http_status: int | None
    outcome: str  # OutcomeKind
    reason: str
    wait_s: float  # wait before the next attempt (0 when it was the last)
    possibly_billed: bool  # by budget.possibly_billed: the server may have charged for it
    cost_usd: float | None = None  # by the price table (None: recorded before costs were kept)
    tier: str | None = None  # the tier it was billed at: the answer's, else the one asked
