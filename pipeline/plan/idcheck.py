"""Whole-manifest checks on ids, before anything is sent: duplicate ids, ids that cannot be file
names, output names shared by several rows. Every problem is listed (not just the first), each
with the spreadsheet rows it is about, never a derived id's hash.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core.idscheme import IdScheme
from pipeline.plan.manifest import SHEET_ROWS, RowBatch, open_manifest, sheet_row

_UNSAFE_ID = re.compile(r"[/\\\x00-\x1f\x7f]|^\.{1,2}$|^$|^\s|\s$")
MAX_ID_LENGTH = 200


def scan_ids(
    path: Path,
    batch_rows: int,
    limit: int | None = None,
    required: Sequence[str] = ("prompt",),
    stems: Callable[[RowBatch], list[str]] | None = None,
    *,
    sheet: str | None = None,
    ids: IdScheme | None = None,
    id_column: str | None = None,
) -> tuple[list[str], pa.ChunkedArray]:
    """Every id of the manifest, and the problems with them as a whole (see ``IdCheck``)."""
    opened = open_manifest(
        path, sheet=sheet, id_column=id_column, recorded=ids, batch_rows=batch_rows
    )
    check = IdCheck(opened.header.ids, stems)
    for batch in opened.rows(required, limit):
        check.add(batch)
    return check.finish()


class IdCheck:
    """Every id of the manifest, and the problems with them as a whole (all of them, each
    naming its rows, so one pass shows everything to fix), fed a batch at a time.

    Runs before any request: a duplicate id, or two rows whose output names (``stems``, when
    the manifest names its files) are the same, would make two rows share one output file.
    """

    def __init__(
        self, scheme: IdScheme, stems: Callable[[RowBatch], list[str]] | None = None
    ) -> None:
        self.scheme = scheme
        self.stems = stems
        self.chunks: list[pa.Array] = []  # the ids, in manifest order
        self.lines: list[pa.Array] = []  # each id's data row number, to name rows in messages
        self.names: list[pa.Array] = []  # lower-cased output names, when the manifest has any
        self.problems: list[str] = []
        self.unsafe = 0

    def add(self, batch: RowBatch) -> None:
        self.chunks.append(batch.ids)
        n = len(batch.ids)
        self.lines.append(
            batch.lines
            if batch.lines is not None
            else pa.array(range(batch.first_line, batch.first_line + n), pa.int64())
        )
        if self.stems is not None:
            # Lower-cased: "SKU-1" and "sku-1" are one file on macOS and Windows.
            stems = [s.lower() for s in self.stems(batch)]
            self.names.append(pa.array(stems, type=pa.string()))
        bad = pc.match_substring_regex(batch.ids, _UNSAFE_ID.pattern)
        too_long = pc.greater(pc.utf8_length(batch.ids), MAX_ID_LENGTH)
        for i in pc.indices_nonzero(pc.or_(bad, too_long)).to_pylist():
            self.unsafe += 1
            if self.unsafe <= 5:
                self.problems.append(
                    f"row {sheet_row(batch.line(i))}: id {batch.ids[i].as_py()!r} cannot be a "
                    f"file name (no /, \\, control characters, '..', empty or over "
                    f"{MAX_ID_LENGTH} characters)"
                )

    def finish(self) -> tuple[list[str], pa.ChunkedArray]:
        """The problems found (empty if none) and every id, in manifest order."""
        problems, scheme = list(self.problems), self.scheme
        if self.unsafe > 5:
            problems.append(f"{self.unsafe - 5} more rows have ids that cannot be file names")
        all_ids = pa.chunked_array(self.chunks, type=pa.string())
        all_lines = pa.chunked_array(self.lines, type=pa.int64())
        if shared := _shared(all_ids, all_lines):
            count, groups = shared
            if scheme.column is None:
                shown = "; ".join(f"rows {_rows(rows)}" for _, rows in groups)
                which = f"{shown} are" if count == 1 else f"{count} sets of rows are, e.g. {shown},"
                problems.append(
                    f"duplicate ids: {which} identical (the same value in every column); without "
                    "an id column a row's id comes from its values, so identical rows clash: "
                    "remove the copies, or give each row an id (an id, sku or key column, or "
                    "--id-column COL)"
                )
            else:
                shown = "; ".join(f"{v!r} in rows {_rows(rows)}" for v, rows in groups)
                problems.append(
                    f"{count} duplicate ids in column {scheme.column!r}: {shown}; every row needs "
                    "its own id (--id-column COL reads ids from another column)"
                )
        names = pa.chunked_array(self.names, type=pa.string())
        if self.names and (shared := _shared(names, all_lines)):
            count, groups = shared
            shown = "; ".join(f"{v!r} in rows {_rows(rows)}" for v, rows in groups)
            problems.append(
                f"{count} output names are shared by several rows: {shown}; make the "
                "output_name column or --name-template unique per row"
            )
        if problems:
            problems[-1] += f" ({SHEET_ROWS})"
        return problems, all_ids


def _shared(
    values: pa.ChunkedArray, lines: pa.ChunkedArray, shown: int = 5
) -> tuple[int, list[tuple[str, list[int]]]] | None:
    """How many values occur more than once, and the first few with their spreadsheet rows."""
    counts = pc.value_counts(values)
    dup = counts.filter(pc.greater(counts.field("counts"), 1))
    if not len(dup):
        return None
    first = dup.field("values").slice(0, shown)
    where = pc.is_in(values, value_set=first)
    rows: dict[str, list[int]] = {}
    for value, line in zip(
        values.filter(where).to_pylist(), lines.filter(where).to_pylist(), strict=True
    ):
        rows.setdefault(value, []).append(sheet_row(line))
    return len(dup), [(v, rows[v]) for v in first.to_pylist()]


def _rows(rows: list[int]) -> str:
    listed = ", ".join(str(r) for r in rows[:-1][:4])
    more = f" (and {len(rows) - 5} more)" if len(rows) > 5 else ""
    return f"{listed} and {rows[-1]}{more}" if listed else str(rows[-1])
