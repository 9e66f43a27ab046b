"""The attempt history read back: ``attempts.parquet`` a row group at a time, then the intact
records of ``attempts.journal`` (a run going, or one killed before its fold). Read-only, no lock.

``spend`` sums what the attempts cost and ``nanobatch report`` times the runs from them; each
decides for itself what an unreadable file means (spend stops, the report does without). A
batch fold that a kill cut short asks which of its rows' attempts are already recorded
(``batch_attempts``), so that folding the job again records none of them twice.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.store.journal import Damaged, scan_journal
from pipeline.store.ledger import ATTEMPTS_FILE, ATTEMPTS_JOURNAL_FILE, ATTEMPTS_SCHEMA

_STAMPS = [f.name for f in ATTEMPTS_SCHEMA if pa.types.is_timestamp(f.type)]


def folded_batches(out_dir: Path, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
    """The ``columns`` ``attempts.parquet`` has (an older one lacks some), a row group at a
    time; nothing when there is no file. Raises ``pa.ArrowInvalid`` or OSError if unreadable."""
    path = out_dir / ATTEMPTS_FILE
    if not path.exists():
        return
    source = pq.ParquetFile(path, memory_map=True)
    present = set(source.schema_arrow.names)
    wanted = [c for c in columns if c in present]
    yield from source.iter_batches(columns=wanted, use_threads=False)


def journal_records(out_dir: Path) -> Iterator[dict[str, Any]]:
    """The intact records of ``attempts.journal`` (a damaged line's attempt is lost with it),
    timestamps as datetimes as in the Parquet file (the journal keeps ISO 8601 text)."""
    for record in scan_journal(out_dir / ATTEMPTS_JOURNAL_FILE):
        if isinstance(record, Damaged):
            continue
        for name in _STAMPS:
            if isinstance(text := record.get(name), str):
                try:
                    record[name] = datetime.fromisoformat(text)
                except ValueError:
                    record[name] = None
        yield record


# The folded history keeps times to the millisecond (``schema``); the journal to the microsecond.
_SAME_TIME = timedelta(milliseconds=1)


def batch_attempts(out_dir: Path, rows: set[str], started_at: datetime) -> set[str]:
    """Which of ``rows`` have an attempt at the batch tier that started at ``started_at`` (a
    batch job's creation: all its rows' attempts start then) in the history."""
    found: set[str] = set()
    wanted = pa.array(sorted(rows), pa.string())

    def match(row_id: object, started: object, tier: object) -> None:
        if tier != "batch" or not isinstance(started, datetime) or not isinstance(row_id, str):
            return
        if abs(started - started_at) < _SAME_TIME:
            found.add(row_id)

    for batch in folded_batches(out_dir, ["row_id", "started_at", "tier"]):
        if "tier" not in batch.schema.names:
            continue  # from before attempts kept their tier: from before batch mode
        mine = batch.filter(pc.is_in(batch.column("row_id"), value_set=wanted))
        for row_id, started, tier in zip(*(c.to_pylist() for c in mine.columns), strict=True):
            match(row_id, started, tier)
    for record in journal_records(out_dir):
        if record.get("row_id") in rows:
            match(record.get("row_id"), record.get("started_at"), record.get("tier"))
    return found
