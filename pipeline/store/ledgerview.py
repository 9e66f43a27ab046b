"""A read-only view of an output directory's ledger, as a run would see it; no lock taken.

``ledger.parquet`` holds the rows folded when a run started or ended; ``ledger.journal`` holds
what a run recorded since, while it is going or after it was killed. The view is both, a
journal record superseding the folded row of the same id. A run may be appending meanwhile:
a torn last record is left out, and the journal is read before the Parquet file, because a run
folds by replacing the Parquet file first and emptying the journal after (read in that order,
a fold between the two reads loses nothing). A journal line damaged on disk is listed in
``damaged``; the intact records after it are kept. ``ledger.parquet`` is checked against its
page checksums and its whole-file digest (``filesum``).

``nanobatch verify``, ``report``, ``status`` and the end-of-run summary read directories through
this; nothing here writes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.core.errors import LedgerDamaged, UsageError
from pipeline.store import filesum
from pipeline.store.journal import Damaged, scan_journal
from pipeline.store.ledger import JOURNAL_FILE, LEDGER_FILE, SCHEMA

REQUIRED = ("row_id", "status", "reason")


@dataclass(frozen=True, slots=True)
class LedgerView:
    """The ledger of a directory at one moment."""

    table: pa.Table  # one row per row id, the asked columns (typed as in SCHEMA)
    folded_rows: int  # rows read from ledger.parquet
    journal_records: int  # intact records read from ledger.journal (a run is going or crashed)
    damaged: tuple[Damaged, ...]  # journal lines that fail their checksum: their records are lost

    @property
    def live(self) -> bool:
        """A run is going, or the last one did not end cleanly: the journal has records."""
        return self.journal_records > 0 or bool(self.damaged)

    def by_status(self) -> Counter[str]:
        """Rows per (last) status; the view must have been read with the status column."""
        counts = pc.value_counts(self.table["status"]).to_pylist()
        return Counter({c["values"]: c["counts"] for c in counts})


def has_ledger(out_dir: Path) -> bool:
    """Whether a run ever recorded anything in ``out_dir``."""
    return (out_dir / LEDGER_FILE).exists() or (out_dir / JOURNAL_FILE).exists()


def require_ledger(out_dir: Path) -> None:
    if not has_ledger(out_dir):
        raise UsageError(
            f"{out_dir} has no {LEDGER_FILE}: is it a nanobatch output directory? "
            f"(run nanobatch run --out {out_dir} first)"
        )


def read_ledger_view(out_dir: Path, columns: Sequence[str] | None = None) -> LedgerView:
    """The ledger as a run would see it. Raises UsageError when there is none or it is damaged."""
    require_ledger(out_dir)
    names = list(columns) if columns is not None else SCHEMA.names
    if "row_id" not in names:
        names = ["row_id", *names]
    schema = pa.schema([SCHEMA.field(n) for n in names])
    latest: dict[str, dict[str, Any]] = {}
    damaged: list[Damaged] = []
    records = 0
    for item in scan_journal(out_dir / JOURNAL_FILE):
        if isinstance(item, Damaged):
            damaged.append(item)
        elif isinstance(item.get("row_id"), str):
            records += 1
            latest[item["row_id"]] = item
    folded = read_folded(out_dir, schema)
    fresh = _journal_table(list(latest.values()), schema)
    if folded is not None and folded.num_rows:
        keep = pc.invert(pc.is_in(folded["row_id"], value_set=fresh["row_id"]))
        table = pa.concat_tables([folded.filter(keep), fresh])
    else:
        table = fresh
    return LedgerView(table, folded.num_rows if folded is not None else 0, records, tuple(damaged))


def read_folded(out_dir: Path, schema: pa.Schema) -> pa.Table | None:
    """``ledger.parquet``'s columns of ``schema`` (nulls for columns an older ledger lacks)."""
    path = out_dir / LEDGER_FILE
    if not path.exists():
        return None
    if why := filesum.damage(path):
        raise LedgerDamaged(filesum.damaged_message(path, why))
    try:
        present = set(pq.read_schema(path).names)
        missing = [c for c in REQUIRED if c not in present]
        if missing:
            raise UsageError(f"{path} is not a nanobatch ledger (no {', '.join(missing)} column)")
        wanted = [n for n in schema.names if n in present]
        table = pq.read_table(path, columns=wanted, page_checksum_verification=True)
    except (pa.ArrowInvalid, OSError) as e:
        raise LedgerDamaged(filesum.damaged_message(path, f"not a readable ledger: {e}")) from None
    arrays = [
        table[n].cast(schema.field(n).type)
        if n in present
        else pa.nulls(table.num_rows, schema.field(n).type)
        for n in schema.names
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def _journal_table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Journal records (timestamps as ISO text) as a table of ``schema``."""
    stamps = [n for n in schema.names if pa.types.is_timestamp(schema.field(n).type)]
    picked = []
    for row in rows:
        values = {n: row.get(n) for n in schema.names}
        for n in stamps:
            if isinstance(stamp := values[n], str):
                values[n] = datetime.fromisoformat(stamp)
        picked.append(values)
    return pa.Table.from_pylist(picked, schema=schema)
