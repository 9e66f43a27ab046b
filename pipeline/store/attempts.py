"""The attempt history read back: ``attempts.parquet`` a row group at a time, then the intact
records of ``attempts.journal`` (a run going, or one killed before its fold). Read-only, no lock.

``spend`` sums what the attempts cost and ``nanobatch report`` times the runs from them; each
decides for itself what an unreadable file means (spend stops, the report does without).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
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
