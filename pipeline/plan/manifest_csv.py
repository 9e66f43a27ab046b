"""Read a CSV or TSV manifest as spreadsheets save it, streamed in blocks, every value as text.

What Excel and friends really write, and what happens to it:
- UTF-8, with or without a byte order mark: read.
- UTF-16 with a byte order mark (Excel's "Unicode Text"): read, with a note.
- Anything else that is not UTF-8 (Excel's Windows "CSV", cp1252): stopped, naming the row and
  how to save as UTF-8 (guessing a code page could send a wrong prompt and bill it).
- Separated by ``;`` or tabs although named ``.csv`` (European Excel): the separator is found
  from the header row, with a note.
- A quote that is never closed swallows the rows after it into one value: when any value
  spans lines, the file is checked once with a strict parser, and such a quote is reported
  with its row.
- Duplicate header names, and a value larger than the reader's block, are reported with the
  row, never as a KeyError or the reader's own words.
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from pipeline.core.errors import UsageError

BLOCK_SIZE = 1 << 20  # bounds the reader's read-ahead; also the largest row it can read
_HEAD_BYTES = 1 << 16
_SEPARATORS = {",": "comma", ";": "semicolon", "\t": "tab"}
_SAVE_AS_UTF8 = (
    "in Excel: File > Save As > 'CSV UTF-8 (Comma delimited) (*.csv)'; in LibreOffice: "
    "Save As > Text CSV, character set 'Unicode (UTF-8)'"
)


def csv_batches(path: Path) -> tuple[list[str], Iterator[pa.RecordBatch]]:
    """Notes to tell the user once, and the file's record batches (every column text)."""
    encoding, head = _encoding(path)
    default = "\t" if path.suffix.lower() == ".tsv" else ","
    header, separator = _header(head, default)
    if not header:
        raise UsageError(f"{path} is empty; a manifest needs a header row with a prompt column")
    notes = []
    if encoding != "utf-8":
        notes.append(
            f"{path.name} is read as UTF-16 (Excel's 'Unicode Text'); UTF-8 is the "
            f"usual form: {_SAVE_AS_UTF8}"
        )
    if separator != default:
        notes.append(
            f"{path.name} is read as {_SEPARATORS[separator]}-separated (found in its header row)"
        )
    names = _column_names(path, header)
    return notes, _batches(path, names, separator, encoding)


def _encoding(path: Path) -> tuple[str, str]:
    """The file's encoding and its first characters; stops on a file that is not UTF-8."""
    with open(path, "rb") as f:
        raw = f.read(_HEAD_BYTES)
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", raw.decode("utf-16", errors="ignore")
    try:
        return "utf-8", codecs.getincrementaldecoder("utf-8-sig")().decode(raw, final=False)
    except UnicodeDecodeError:
        raise UsageError(not_utf8(path)) from None


def not_utf8(path: Path) -> str:
    """Where the file stops being UTF-8 (as a spreadsheet row), and how to save it as UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    prefix: list[str] = []
    with open(path, "rb") as f:
        while chunk := f.read(_HEAD_BYTES):
            try:
                prefix.append(decoder.decode(chunk))
            except UnicodeDecodeError as e:
                prefix.append(chunk[: e.start].decode("utf-8", errors="ignore"))
                bad = chunk[e.start]
                break
        else:
            return f"{path} is not UTF-8 text; save it as UTF-8 ({_SAVE_AS_UTF8})"
    text = "".join(prefix)
    records = sum(1 for _ in csv.reader(io.StringIO(text)))
    row = records + (1 if not text or text.endswith(("\n", "\r")) else 0)
    guess = bytes([bad]).decode("cp1252", errors="replace")
    return (
        f"{path} is not UTF-8: row {row} (counting the header as row 1) has the byte "
        f"0x{bad:02x} ({guess!r} in Windows-1252, as Excel's 'CSV (Comma delimited)' saves on "
        f"Windows); save it as UTF-8: {_SAVE_AS_UTF8}"
    )


def _header(head: str, default: str) -> tuple[list[str], str]:
    """The header row and the separator that splits it into the most columns."""
    best: tuple[list[str], str] = ([], default)
    for separator in (default, *(s for s in _SEPARATORS if s != default)):
        header = next(csv.reader(io.StringIO(head), delimiter=separator), [])
        if len(header) > len(best[0]):
            best = (header, separator)
    return best


def _column_names(path: Path, header: list[str]) -> list[str]:
    """The header's names; an unnamed column gets ``column N``; a repeated name stops."""
    names = [name.strip() or f"column {i + 1}" for i, name in enumerate(header)]
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise UsageError(
                f"{path}: columns {seen[name] + 1} and {i + 1} of the header row (row 1) are "
                f"both named {name!r}; rename one"
            )
        seen[name] = i
    return names


def _batches(
    path: Path, names: list[str], separator: str, encoding: str
) -> Iterator[pa.RecordBatch]:
    checked = False
    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(
                block_size=BLOCK_SIZE,
                column_names=names,
                skip_rows=1,
                encoding="utf8" if encoding == "utf-8" else encoding,  # utf8: no transcoding
            ),
            parse_options=pacsv.ParseOptions(delimiter=separator, newlines_in_values=True),
            # Every column as text: an id like 007 or a prompt like "1:1" is not a number.
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        for batch in reader:
            if not checked and _spans_lines(batch):
                checked = True
                if problem := quote_problem(path, separator, encoding):
                    raise UsageError(problem)
            yield batch
    except (pa.ArrowInvalid, UnicodeDecodeError) as e:
        raise UsageError(_explain(path, str(e), separator, encoding)) from None


def _spans_lines(batch: pa.RecordBatch) -> bool:
    return any(
        pc.any(pc.match_substring(column, "\n")).as_py() or False for column in batch.columns
    )


def _explain(path: Path, message: str, separator: str, encoding: str) -> str:
    """The reader's error in the user's terms, with the row when it can be found."""
    if "UTF8" in message or "UTF-8" in message:
        return not_utf8(path)
    if problem := quote_problem(path, separator, encoding):
        return problem
    if "straddling" in message:
        return _too_big(path, separator, encoding)
    if "Expected" in message and "columns" in message:
        return _wrong_width(path, separator, encoding)
    first = message.strip().splitlines()[0] if message.strip() else "unreadable"
    return f"{path} cannot be read as a manifest: {first}"


@functools.lru_cache(maxsize=8)
def _strict_scan(path: Path, size: int, mtime_ns: int, separator: str, encoding: str) -> str | None:
    del size, mtime_ns  # part of the cache key: an edited file is checked again
    csv.field_size_limit(sys.maxsize)  # a long value is not a broken quote
    rows = 0
    with open(path, encoding="utf-8-sig" if encoding == "utf-8" else encoding, newline="") as f:
        reader = csv.reader(f, delimiter=separator, strict=True)
        try:
            for rows, _ in enumerate(reader, start=1):  # noqa: B007 (rows counts records)
                pass
        except csv.Error as e:
            return (
                f"{path}: row {rows + 1} (counting the header as row 1) has a quote that is not "
                f"closed where its value ends ({e}), so the rows after it are read as part of "
                'that value; close the quote, or double it ("") inside a value'
            )
    return None


def quote_problem(path: Path, separator: str, encoding: str) -> str | None:
    """A quote that swallows the rows after it, found by a strict parse (once per file)."""
    stat = path.stat()
    return _strict_scan(path, stat.st_size, stat.st_mtime_ns, separator, encoding)


def _too_big(path: Path, separator: str, encoding: str) -> str:
    limit = BLOCK_SIZE
    csv.field_size_limit(sys.maxsize)
    with open(path, encoding="utf-8-sig" if encoding == "utf-8" else encoding, newline="") as f:
        reader = csv.reader(f, delimiter=separator)
        header = next(reader, [])
        for row, values in enumerate(reader, start=2):
            if sum(len(v) for v in values) >= limit:
                i = max(range(len(values)), key=lambda k: len(values[k]))
                column = header[i] if i < len(header) else f"column {i + 1}"
                return (
                    f"{path}: row {row} (counting the header as row 1) is over "
                    f"{limit // (1 << 20)} MB (column {column!r} holds "
                    f"{len(values[i]) / 1e6:.1f} million characters), more than a manifest row "
                    "can hold; shorten it (source images go in files named in 'images')"
                )
    return f"{path}: a row is over {limit // (1 << 20)} MB, more than a manifest row can hold"


def _wrong_width(path: Path, separator: str, encoding: str) -> str:
    with open(path, encoding="utf-8-sig" if encoding == "utf-8" else encoding, newline="") as f:
        reader = csv.reader(f, delimiter=separator)
        width = len(next(reader, []))
        for row, values in enumerate(reader, start=2):
            if values and len(values) != width:
                return (
                    f"{path}: row {row} (counting the header as row 1) has {len(values)} values "
                    f"but the header has {width} columns; quote a value that contains the "
                    f"separator ({_SEPARATORS.get(separator, separator)!s})"
                )
    return f"{path}: a row has more or fewer values than the header has columns"
