"""Folding a journal into a Parquet file, streaming: the fold's memory is bounded by its batch
size, however long the journal (a crashed million-row run leaves a million records).

A journal is decoded ``batch`` records at a time, each batch turned into Arrow and passed on;
no list of every record is ever built, and Parquet files are read a few thousand rows at a
time. What grows with the journal is only its row ids, kept as one Arrow column (tens of
bytes per row, not the kilobytes of a decoded record), to know which record of a row is the
latest.

The ledger keeps one row per row id, the latest (``fold_latest``): the journal's records are
first copied batch by batch to a spill file beside the ledger (a ``.tmp-`` file, which the
next start removes if a crash leaves it), collecting the row ids of the old ledger and the
journal in recorded order; a sort of those ids marks the last record of each; then the old
ledger and the spill are streamed into the new ledger, keeping only the marked rows. The
attempt history keeps everything (``fold_append``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from itertools import chain, islice
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.core.errors import LedgerDamaged
from pipeline.store import filesum
from pipeline.store.journal import Damaged, scan_journal

FOLD_BATCH = 4096  # journal records decoded at a time: about 30 MB of Python objects
READ_ROWS = 8192  # Parquet rows decoded at a time (Arrow memory, a few MB)

# Writes ``tables`` as the new content of a Parquet file, atomically (the ledger's writer).
Write = Callable[[Iterable[pa.Table], pa.Schema, Path], None]


def _table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Journal rows (timestamps as ISO text) as a table of ``schema``."""
    for name in schema.names:
        if pa.types.is_timestamp(schema.field(name).type):
            for row in rows:
                value = row.get(name)
                if isinstance(value, str):
                    row[name] = datetime.fromisoformat(value)
    return pa.Table.from_pylist(rows, schema=schema)


def journal_tables(path: Path, schema: pa.Schema, batch: int) -> Iterator[pa.Table]:
    """A journal's intact records as tables of at most ``batch`` rows."""
    # A damaged line's record is lost (the journal's readers report it); the rest are kept.
    records = (item for item in scan_journal(path) if not isinstance(item, Damaged))
    while rows := list(islice(records, batch)):
        yield _table(rows, schema)


def parquet_tables(path: Path, schema: pa.Schema) -> Iterator[pa.Table]:
    """A Parquet file's rows a row group at a time, as tables of ``schema`` (nothing if there
    is no file); columns an older file lacks read as nulls.

    One reader per row group, because Arrow's readers hold on to what they have read until
    they reach their end: a reader over the whole file would grow with it.
    """
    if not path.exists():
        return
    try:
        source = pq.ParquetFile(path, page_checksum_verification=True)
        present = [name for name in schema.names if name in source.schema_arrow.names]
        for index in range(source.num_row_groups):
            for batch in source.iter_batches(
                READ_ROWS, row_groups=[index], columns=present, use_threads=False
            ):
                columns = [
                    batch.column(field.name).cast(field.type)
                    if field.name in present
                    else pa.nulls(batch.num_rows, field.type)
                    for field in schema
                ]
                yield pa.Table.from_arrays(columns, schema=schema)
    except (pa.ArrowInvalid, OSError) as e:
        raise LedgerDamaged(filesum.damaged_message(path, f"unreadable: {e}")) from None


def row_groups(tables: Iterable[pa.Table], rows: int) -> Iterator[pa.Table]:
    """``tables`` regrouped into tables of exactly ``rows`` rows (the last one may be short),
    so the file gets row groups of that size whatever the batch size."""
    pending: list[pa.Table] = []
    count = 0
    for table in tables:
        pending.append(table)
        count += table.num_rows
        while count >= rows:
            whole = pa.concat_tables(pending)
            yield whole.slice(0, rows)
            rest = whole.slice(rows)
            pending, count = ([rest] if rest.num_rows else []), rest.num_rows
    if pending:
        yield pa.concat_tables(pending)


def fold_append(journal: Path, target: Path, schema: pa.Schema, batch: int, write: Write) -> None:
    """Append the journal's records to ``target`` (untouched if the journal has none)."""
    tables = journal_tables(journal, schema, batch)
    first = next(tables, None)
    if first is not None:
        write(chain(parquet_tables(target, schema), [first], tables), schema, target)


def fold_latest(journal: Path, target: Path, schema: pa.Schema, batch: int, write: Write) -> int:
    """Fold the journal into ``target`` keeping one row per ``row_id``: a later record
    supersedes an earlier one, and any record supersedes ``target``'s row. Returns the number
    of records folded (0: ``target`` untouched)."""
    spill = target.with_name(f".tmp-{os.getpid()}-spill-{target.name}")
    try:
        # Row ids in recorded order: the old ledger's rows, then the journal's records.
        ids = list(_column(target, "row_id"))
        kept = sum(len(c) for c in ids)
        with pq.ParquetWriter(spill, schema, compression="lz4") as writer:
            for table in journal_tables(journal, schema, batch):
                writer.write_table(table, row_group_size=batch)
                ids += table["row_id"].chunks
        folded = sum(len(c) for c in ids) - kept
        if not folded:
            return 0
        latest = _latest(pa.chunked_array(ids, pa.string()))
        del ids

        def rows() -> Iterator[pa.Table]:
            offset = 0
            for table in chain(parquet_tables(target, schema), parquet_tables(spill, schema)):
                keep = latest.slice(offset, table.num_rows)
                offset += table.num_rows
                yield table if keep.true_count == table.num_rows else table.filter(keep)

        write(rows(), schema, target)
        return folded
    finally:
        spill.unlink(missing_ok=True)


def _column(path: Path, name: str) -> Iterator[pa.Array]:
    """One column of a Parquet file, a row group at a time (nothing if there is no file)."""
    for table in parquet_tables(path, pa.schema([(name, pa.string())])):
        yield from table[name].chunks


def _latest(ids: pa.ChunkedArray) -> pa.Array:
    """A mask over ``ids`` (in the order they were recorded): True where a record is the last
    of its row id. By sorting, not hashing: a stable sort puts each id's records together in
    recorded order, so the last of each run is the latest (a hash table over a million ids
    takes several times the memory of a sort)."""
    flat = ids.combine_chunks()
    order = pc.sort_indices(flat)
    ordered = flat.take(order)
    n = len(ordered)
    ends = pc.not_equal(ordered.slice(0, n - 1), ordered.slice(1))
    last_of_run = pa.concat_arrays([ends, pa.array([True])])
    back = pc.sort_indices(order)  # the inverse permutation: where each record was sorted to
    return last_of_run.take(back)
