"""Read a manifest (CSV, TSV, Parquet or xlsx) in streaming batches, with ids and known columns.

Memory does not grow with the manifest: rows are read a batch at a time, rows already done
are dropped with one vectorised ``is_in`` per batch, and only pending rows become Python
objects. Each format has its reader (``manifest_csv``, ``manifest_xlsx``; Parquet here); what
they share happens here: headers bound to known columns (``columns``), ids (``rowids``), and
rows with no value at all (a spreadsheet's formatted but empty rows) left out, while every
message keeps the row number the spreadsheet shows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.core.errors import UsageError
from pipeline.core.idscheme import IdScheme
from pipeline.plan.columns import Binding, bind, rename
from pipeline.plan.manifest_csv import csv_batches
from pipeline.plan.manifest_xlsx import xlsx_batches
from pipeline.plan.rowids import choose, ids_of

SHEET_ROWS = "row numbers as a spreadsheet shows them: the header is row 1"
_PARQUET = (".parquet", ".pq")
_TEXT = (".csv", ".tsv", ".txt")
_XLSX = (".xlsx", ".xlsm")


def sheet_row(line: int) -> int:
    """A 1-based data row number as the row a spreadsheet shows (its header is row 1)."""
    return line + 1


@dataclass(frozen=True, slots=True)
class RowBatch:
    """A slice of the manifest: ids for every row, and the rows themselves as a table."""

    first_line: int  # 1-based position of the batch's first row among the manifest's rows
    ids: pa.Array  # string ids, explicit or derived
    table: pa.RecordBatch  # known columns under their own names, the others as written
    lines: pa.Array | None = None  # each row's data row number, when empty rows were left out

    def line(self, i: int) -> int:
        """Row ``i``'s 1-based data row number in the file (``sheet_row`` for messages)."""
        return self.first_line + i if self.lines is None else int(self.lines[i].as_py())


@dataclass(frozen=True, slots=True)
class Header:
    """What a manifest's first rows say: its columns, which are known ones, the id scheme."""

    names: list[str]  # as written
    binding: Binding
    ids: IdScheme
    notes: list[str]  # to tell the user once per command


def _open_batches(
    path: Path, batch_rows: int, sheet: str | None
) -> tuple[list[str], Iterator[pa.RecordBatch]]:
    """Notes and raw record batches, every column as read; UsageError for an unusable file."""
    if path.is_dir():
        raise UsageError(
            f"{path} is a directory; give the manifest file (.csv, .tsv, .xlsx or .parquet)"
        )
    if not path.exists():
        raise UsageError(f"manifest {path} does not exist")
    suffix = path.suffix.lower()
    if sheet is not None and suffix not in _XLSX:
        raise UsageError(f"--sheet {sheet!r}: {path.name} is not an .xlsx workbook")
    if suffix in _PARQUET:
        try:
            return [], pq.ParquetFile(path).iter_batches(batch_size=batch_rows)
        except (pa.ArrowInvalid, pa.ArrowIOError) as e:
            raise UsageError(f"{path} cannot be read as Parquet: {_first_line(e)}") from None
    if suffix in _TEXT:
        return csv_batches(path)
    if suffix in _XLSX:
        return xlsx_batches(path, sheet, batch_rows)
    if suffix == ".xls":
        raise UsageError(f"{path}: the old .xls format is not read; save it as .xlsx or CSV UTF-8")
    raise UsageError(f"{path}: unknown manifest type {suffix!r}; use .csv, .tsv, .xlsx or .parquet")


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _header(
    notes: list[str],
    first: pa.RecordBatch,
    id_column: str | None,
    recorded: IdScheme | None,
    finished: int = 0,
) -> Header:
    binding = bind(first.schema.names, first)
    scheme, id_notes = choose(first.schema.names, id_column, recorded, finished)
    return Header(list(first.schema.names), binding, scheme, [*notes, *binding.notes, *id_notes])


class Opened:
    """A manifest opened once: its header, read from the first rows, then its rows, read once.

    The header is settled before any row is used (the id scheme may depend on the folder), and
    the rows come from the same read: a run probes the columns once and parses the file once.
    """

    def __init__(
        self, path: Path, header: Header, first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]
    ) -> None:
        self.path = path
        self.header = header
        self._raw: Iterator[pa.RecordBatch] | None = chain([first], rest)
        self._skip_empty = path.suffix.lower() not in _PARQUET
        self.seen = 0  # rows with a value among the raw batches read so far

    def rows(
        self,
        required: Sequence[str] = ("prompt",),
        limit: int | None = None,
        *,
        with_ids: bool = True,
    ) -> Iterator[RowBatch]:
        """The rows as batches with ids (once per opening); checks the columns first."""
        raw_iter, self._raw = self._raw, None
        if raw_iter is None:
            raise RuntimeError(f"{self.path}: the rows of one opening are read once")
        header = self.header
        line = 1  # data row number of the next raw row
        kept = 1  # position of the next row among the rows kept
        for read in raw_iter:
            if line == 1:
                _check_columns(self.path, rename(read, header.binding.renames).schema, required)
            raw, lines = read, None
            if self._skip_empty and read.num_rows:
                mask = _has_a_value(read)
                if not pc.all(mask).as_py():
                    raw = read.filter(mask)
                    lines = pc.add(pc.indices_nonzero(mask), pa.scalar(line, pa.uint64()))
            line += read.num_rows
            self.seen += raw.num_rows
            if limit is not None and kept > limit:
                self._raw = raw_iter  # what is left can still be counted
                return
            if limit is not None and raw.num_rows > limit - kept + 1:
                raw = raw.slice(0, limit - kept + 1)
            if raw.num_rows:
                if lines is None and line - read.num_rows != kept:
                    lines = pa.array(range(line - read.num_rows, line), pa.int64())
                if lines is not None:
                    lines = lines.slice(0, raw.num_rows).cast(pa.int64())
                batch = rename(raw, header.binding.renames)
                none = pa.nulls(raw.num_rows, pa.string())
                ids = ids_of(batch, raw, header.ids) if with_ids else none
                yield RowBatch(kept, ids, batch, lines)
            kept += raw.num_rows
        self._raw = iter(())

    def count_all(self) -> int:
        """How many rows with a value the whole file has, reading only what ``rows`` left."""
        if self._raw is None:
            raise RuntimeError(f"{self.path}: its rows are being read")
        if not self._skip_empty:  # Parquet: its footer says, every row counts
            self._raw = iter(())
            return int(pq.ParquetFile(self.path).metadata.num_rows)
        for read in self._raw:
            self.seen += int(pc.sum(_has_a_value(read)).as_py() or 0) if read.num_rows else 0
        self._raw = iter(())
        return self.seen


def open_manifest(
    path: Path,
    *,
    sheet: str | None = None,
    id_column: str | None = None,
    recorded: IdScheme | None = None,
    finished: int = 0,
    batch_rows: int = 4096,
) -> Opened:
    """The manifest opened and its header read: columns, bindings, the id scheme, the notes."""
    notes, raw = _open_batches(path, batch_rows, sheet)
    raw = iter(raw)
    first = next(raw, None)
    if first is None:
        raise UsageError(f"{path} has no rows")
    return Opened(path, _header(notes, first, id_column, recorded, finished), first, raw)


def inspect(path: Path) -> Header:
    """The manifest's header as a first run would read it: columns, bindings, the id scheme,
    the notes (``open_manifest`` takes a run's settings)."""
    return open_manifest(path).header


def read_batches(
    path: Path,
    batch_rows: int,
    limit: int | None = None,
    required: Sequence[str] = ("prompt",),
    *,
    sheet: str | None = None,
    ids: IdScheme | None = None,
    id_column: str | None = None,
    with_ids: bool = True,
) -> Iterator[RowBatch]:
    """The manifest as batches with ids; checks the columns once, before any row is used.

    ``ids`` is the scheme settled for this run; without it one is chosen from the header
    (``id_column``, then a column named id, sku or key, else derived).
    """
    opened = open_manifest(
        path, sheet=sheet, id_column=id_column, recorded=ids, batch_rows=batch_rows
    )
    yield from opened.rows(required, limit, with_ids=with_ids)


def _has_a_value(batch: pa.RecordBatch) -> pa.Array:
    """Per row: does any column hold something other than blanks?"""
    mask = None
    for column in batch.columns:
        text = pc.utf8_trim_whitespace(column.cast(pa.string()).fill_null(""))
        filled = pc.not_equal(text, "")
        mask = filled if mask is None else pc.or_(mask, filled)
    assert mask is not None
    return mask


_TEXT_COLUMNS = ("prompt", "model", "aspect_ratio", "image_size", "size",
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
