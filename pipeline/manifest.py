"""Read a CSV or Parquet manifest in streaming batches and turn its rows into jobs.

Memory does not grow with the manifest: rows are read a batch at a time, rows already done
are dropped with one vectorised ``is_in`` per batch, and only pending rows become Python
objects.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipeline.errors import UsageError

# The columns a derived id hashes: frozen, or every id derived before would change.
_ID_CONTENT = ("prompt", "images", "model", "aspect_ratio", "image_size")
_UNSAFE_ID = re.compile(r"[/\\\x00-\x1f\x7f]|^\.{1,2}$|^$|^\s|\s$")
MAX_ID_LENGTH = 200


@dataclass(frozen=True, slots=True)
class RowBatch:
    """A slice of the manifest: ids for every row, and the rows themselves as a table."""

    first_line: int  # 1-based data row number of the batch's first row
    ids: pa.Array  # string ids, explicit or derived
    table: pa.RecordBatch


def _open_batches(path: Path, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Raw record batches, every column as read; raises UsageError for an unusable file."""
    if path.is_dir():
        raise UsageError(f"{path} is a directory; give the manifest file (.csv or .parquet)")
    if not path.exists():
        raise UsageError(f"manifest {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            yield from pq.ParquetFile(path).iter_batches(batch_size=batch_rows)
        elif suffix in (".csv", ".tsv", ".txt"):
            yield from _csv_batches(path, delimiter="\t" if suffix == ".tsv" else ",")
        else:
            raise UsageError(f"{path}: unknown manifest type {suffix!r}; use .csv or .parquet")
    except (pa.ArrowInvalid, pa.ArrowIOError, UnicodeDecodeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = " (save the CSV as UTF-8)" if "utf" in first.lower() else ""
        raise UsageError(f"{path} cannot be read as a manifest: {first}{hint}") from None


def _csv_batches(path: Path, delimiter: str) -> Iterator[pa.RecordBatch]:
    # Read the header ourselves so every column can be typed as text: an id like 007 or a
    # prompt like "1:1" must not be guessed into a number.
    with open(path, encoding="utf-8-sig", newline="") as f:
        header = next(csv.reader(f, delimiter=delimiter), None)
    if not header:
        raise UsageError(f"{path} is empty; a manifest needs a header row with a prompt column")
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=1 << 20),  # bounds the reader's read-ahead
        parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in header},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )
    yield from reader


def read_batches(
    path: Path, batch_rows: int, limit: int | None = None, required: Sequence[str] = ("prompt",)
) -> Iterator[RowBatch]:
    """The manifest as batches with ids; checks the columns once, before any row is used."""
    line = 1
    checked = False
    for raw in _open_batches(path, batch_rows):
        if not checked:
            _check_columns(path, raw.schema, required)
            checked = True
        if limit is not None and line > limit:
            return
        batch = raw if limit is None else raw.slice(0, limit - line + 1)
        if batch.num_rows:
            yield RowBatch(line, _batch_ids(batch), batch)
        line += batch.num_rows
    if not checked:
        raise UsageError(f"{path} has no rows")


def count_rows(path: Path, batch_rows: int, limit: int | None = None) -> int:
    """How many data rows the manifest has (within ``limit``)."""
    if path.suffix.lower() in (".parquet", ".pq"):
        total = int(pq.ParquetFile(path).metadata.num_rows)
    else:
        total = sum(b.num_rows for b in _open_batches(path, batch_rows))
    return total if limit is None else min(total, limit)


_TEXT_COLUMNS = ("id", "prompt", "model", "aspect_ratio", "image_size", "size",
                 "system_instruction", "output_name")  # fmt: skip


def _check_columns(path: Path, schema: pa.Schema, required: Sequence[str]) -> None:
    columns = ", ".join(schema.names) or "none"
    for name in required:
        if name not in schema.names:
            what = (
                "add one with the text of each image's prompt, or pass --prompt-template"
                if name == "prompt"
                else "a template uses it: add the column or fix the template"
            )
            raise UsageError(f"{path} has no {name!r} column (columns: {columns}); {what}")
    for name in _TEXT_COLUMNS:
        if name in schema.names and not _is_text(schema.field(name).type):
            raise UsageError(
                f"{path}: column {name!r} is {schema.field(name).type}, expected text (string)"
            )
    if "images" in schema.names:
        kind = schema.field("images").type
        is_list = pa.types.is_list(kind) or pa.types.is_large_list(kind)
        if not (_is_text(kind) or (is_list and _is_text(kind.value_type))):
            raise UsageError(f"{path}: column 'images' is {kind}, expected list<string> or text")


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t))


def _batch_ids(batch: pa.RecordBatch) -> pa.Array:
    if "id" in batch.schema.names:
        return pc.utf8_trim_whitespace(batch.column("id").cast(pa.string()).fill_null(""))
    return pa.array([derive_id(row) for row in batch.to_pylist()], type=pa.string())


def derive_id(row: dict[str, Any]) -> str:
    """A stable id from a row's content, for manifests without an id column."""
    content = [row.get(name) for name in _ID_CONTENT]
    digest = hashlib.sha256(json.dumps(content, default=str).encode()).hexdigest()
    return f"row-{digest[:16]}"


def check_ids(path: Path, batch_rows: int, limit: int | None = None) -> list[str]:
    """Problems with the manifest's ids as a whole (duplicates, unsafe names); empty if none."""
    return scan_ids(path, batch_rows, limit)[0]


def scan_ids(
    path: Path,
    batch_rows: int,
    limit: int | None = None,
    required: Sequence[str] = ("prompt",),
    stems: Callable[[RowBatch], list[str]] | None = None,
) -> tuple[list[str], pa.ChunkedArray]:
    """Every id of the manifest, and the problems with them as a whole.

    Runs before any request: a duplicate id, or two rows whose output names (``stems``, when
    the manifest names its files) are the same, would make two rows share one output file.
    """
    chunks: list[pa.Array] = []
    names: list[pa.Array] = []
    problems: list[str] = []
    for batch in read_batches(path, batch_rows, limit, required):
        chunks.append(batch.ids)
        if stems is not None:
            # Lower-cased: "SKU-1" and "sku-1" are one file on macOS and Windows.
            names.append(pa.array([n.lower() for n in stems(batch)], type=pa.string()))
        bad = pc.match_substring_regex(batch.ids, _UNSAFE_ID.pattern)
        too_long = pc.greater(pc.utf8_length(batch.ids), MAX_ID_LENGTH)
        for i in pc.indices_nonzero(pc.or_(bad, too_long)).to_pylist()[: 5 - len(problems)]:
            problems.append(
                f"row {batch.first_line + i}: id {batch.ids[i].as_py()!r} cannot be a file name "
                f"(no /, \\, control characters, '..', empty or over {MAX_ID_LENGTH} characters)"
            )
    if chunks:
        counts = pc.value_counts(pa.chunked_array(chunks, type=pa.string()))
        dup = counts.filter(pc.greater(counts.field("counts"), 1))
        if len(dup):
            shown = ", ".join(f"{v['values']!r} ({v['counts']}x)" for v in dup.to_pylist()[:5])
            more = f" and {len(dup) - 5} more" if len(dup) > 5 else ""
            problems.append(
                f"{len(dup)} duplicate ids: {shown}{more}; every row needs its own id "
                "(rows without an id column get one from their content, so identical rows clash)"
            )
    if names:
        counts = pc.value_counts(pa.chunked_array(names, type=pa.string()))
        dup = counts.filter(pc.greater(counts.field("counts"), 1))
        if len(dup):
            shown = ", ".join(f"{v['values']!r} ({v['counts']}x)" for v in dup.to_pylist()[:5])
            problems.append(
                f"{len(dup)} output names are shared by several rows: {shown}; make the "
                "output_name column or --name-template unique per row"
            )
    return problems, pa.chunked_array(chunks, type=pa.string())
