"""Read an ``.xlsx`` manifest (its first sheet, or ``--sheet NAME``) in batches, as text.

openpyxl in read-only mode streams the sheet's XML, so memory stays flat whatever the size
(python-calamine reads about 14x faster but loads the whole sheet, and reads a formula that
has no saved value as an empty cell). Values are the ones Excel saved: a formula's cached
result. A formula without one (a file written by a program that does not calculate) is
reported with its cell, never read as empty; that takes a second, formula-text view of the
same sheet, read in step with the first.

Cells become text as a CSV export would write them: 123 (or 123.0) as "123", a number shown
with leading zeros (format ``00000``) with them, 59.9 shown as ``0.00`` as "59.90", a date as
ISO 8601, TRUE/FALSE.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.core.errors import UsageError

_ZERO_PADDED = re.compile(r"^0+$")
_DECIMALS = re.compile(r"^0\.(0+)$")


def xlsx_batches(
    path: Path, sheet: str | None, batch_rows: int
) -> tuple[list[str], Iterator[pa.RecordBatch]]:
    """Notes to tell the user once, and the sheet's rows as record batches of text."""
    workbook = _open(path, data_only=True)
    names = workbook.sheetnames
    workbook.close()
    notes = []
    if sheet is None:
        sheet = names[0]
        if len(names) > 1:
            notes.append(
                f"{path.name}: reading its first sheet {sheet!r} (it has "
                f"{len(names)}: {', '.join(names)}; --sheet NAME for another)"
            )
    elif sheet not in names:
        raise UsageError(f"{path} has no sheet {sheet!r} (sheets: {', '.join(names)})")
    return notes, _batches(path, sheet, batch_rows)


def _open(path: Path, *, data_only: bool) -> Any:
    # Imported here: openpyxl takes a fifth of a second to import, and most runs read no .xlsx.
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        return load_workbook(path, read_only=True, data_only=data_only)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError) as e:
        raise UsageError(
            f"{path} cannot be read as an .xlsx workbook ({e}); save it from "
            "Excel as 'Excel Workbook (.xlsx)' or as 'CSV UTF-8'"
        ) from None


def _batches(path: Path, sheet: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
    values, formulas = _open(path, data_only=True), _open(path, data_only=False)
    try:
        yield from _read(path, values[sheet], formulas[sheet], batch_rows)
    finally:
        values.close()
        formulas.close()


def _read(path: Path, sheet: Any, formulas: Any, batch_rows: int) -> Iterator[pa.RecordBatch]:
    from openpyxl.utils import get_column_letter

    rows = zip(sheet.iter_rows(), formulas.iter_rows(values_only=True), strict=False)
    first = next(rows, None)
    header = [_text(c.value, c.number_format) for c in first[0]] if first else []
    while header and not header[-1]:
        header.pop()  # formatted but empty columns past the last header
    if not header:
        raise UsageError(f"{path}: the sheet is empty; a manifest needs a header row")
    names = [name or f"column {get_column_letter(i + 1)}" for i, name in enumerate(header)]
    if len(set(names)) < len(names):
        twice = next(n for n in names if names.count(n) > 1)
        where = [get_column_letter(i + 1) for i, n in enumerate(names) if n == twice]
        raise UsageError(
            f"{path}: columns {' and '.join(where)} of the header row (row 1) are "
            f"both named {twice!r}; rename one"
        )
    columns: list[list[str]] = [[] for _ in names]
    for number, (cells, texts) in enumerate(rows, start=2):
        for i in range(len(names)):
            cell = cells[i] if i < len(cells) else None
            value = None if cell is None else cell.value
            if value is None and i < len(texts) and _is_formula(texts[i]):
                raise UsageError(
                    f"{path}: row {number}, column {names[i]!r} (cell "
                    f"{get_column_letter(i + 1)}{number}) is a formula with no saved value (the "
                    "file was written by a program that does not calculate); open and save it "
                    "in Excel or LibreOffice, or export it as CSV UTF-8"
                )
            columns[i].append(_text(value, getattr(cell, "number_format", None)))
        if len(columns[0]) >= batch_rows:
            yield _batch(names, columns)
            columns = [[] for _ in names]
    if columns[0]:
        yield _batch(names, columns)


def _batch(names: list[str], columns: list[list[str]]) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array(c, pa.string()) for c in columns], names=names)


def _is_formula(value: object) -> bool:
    return isinstance(value, str) and value.startswith("=")


def _text(value: object, number_format: str | None) -> str:
    """A cell as text, as a CSV export would write it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if (
        isinstance(value, int | float)
        and number_format
        and (places := _DECIMALS.match(number_format))
    ):
        return f"{value:.{len(places[1])}f}"  # 59.90 shown as 59.90, as a CSV export writes it
    if isinstance(value, int | float) and float(value).is_integer():
        digits = str(int(value))
        if number_format and _ZERO_PADDED.match(number_format):
            return digits.zfill(len(number_format))  # a SKU 00123 stored as a number
        return digits
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value).strip()
