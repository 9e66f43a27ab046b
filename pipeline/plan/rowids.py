"""Row ids: which column holds them (or how they are derived), read as text, and the scheme an
output folder was made with.

An id is the key a resume matches on, so the scheme is part of the folder: it is recorded in
``ids.json`` next to the ledger on the first run and kept by every later run. A run that would
read ids another way stops and says how many finished rows would no longer be recognised (and
so be sent again) instead of paying for them silently. Folders from before the record infer
their scheme from their ledger.

Schemes, in the order a manifest without ``--id-column`` is looked at:
- a column: ``--id-column COL``, else a column named ``id``, ``sku`` or ``key`` (any case);
- derived (``v2``): a hash of every non-empty value of the row as text, keyed by the column's
  normalised name, so the same data as CSV, TSV, Parquet or xlsx gets the same ids, and rows
  that differ in any column (a ``sku``) do not clash;
- derived ``v1``: the hash used before (prompt, images, model, aspect_ratio, image_size as
  read, so it differed between CSV and Parquet); kept only for folders made with it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core.errors import UsageError
from pipeline.core.idscheme import IdScheme
from pipeline.plan.columns import normalise
from pipeline.store.storage import write_atomic

ID_FILE = "ids.json"
AUTO_ID_COLUMNS = ("id", "sku", "key")  # looked for in this order, in any case
_V1_CONTENT = ("prompt", "images", "model", "aspect_ratio", "image_size")  # frozen
_V1_ID = re.compile(r"^row-[0-9a-f]{16}$")


def same_scheme(a: IdScheme, b: IdScheme) -> bool:
    """Whether two schemes read the same ids (a column's header may be spelled differently)."""
    if a.column is None or b.column is None:
        return a.column is None and b.column is None and a.derived == b.derived
    return normalise(a.column) == normalise(b.column)


def choose(
    names: Sequence[str], option: str | None, recorded: IdScheme | None, finished: int = 0
) -> tuple[IdScheme, list[str]]:
    """The scheme for this manifest: ``--id-column``, else the folder's, else by the header.

    Raises UsageError when the option names no column, or differs from the folder's scheme.
    """
    notes: list[str] = []
    columns = ", ".join(names)
    if option is not None:
        column = _find(names, option)
        if column is None:
            raise UsageError(
                f"--id-column {option!r}: the manifest has no such column (columns: {columns})"
            )
        chosen = IdScheme(column)
        if recorded is not None and not same_scheme(chosen, recorded):
            raise UsageError(scheme_change(recorded, chosen, finished))
        return chosen, notes
    if recorded is not None:
        if recorded.column is None:
            if auto := _auto(names):
                notes.append(
                    f"row ids are {recorded.describe()}, as when this output folder "
                    f"was made; column {auto!r} is not used for ids"
                )
            return recorded, notes
        column = _find(names, recorded.column)
        if column is None:
            raise UsageError(
                f"this output folder's row ids come from column {recorded.column!r}, which the "
                f"manifest no longer has (columns: {columns}); add it back, or use a new --out "
                "(every row would be sent again)"
            )
        return IdScheme(column), notes
    if column := _auto(names):
        if column != "id":
            notes.append(
                f"row ids are read from column {column!r} (--id-column COL to choose another)"
            )
        return IdScheme(column), notes
    return IdScheme(), notes


def _auto(names: Sequence[str]) -> str | None:
    """The first column named id, sku or key, in any case."""
    for wanted in AUTO_ID_COLUMNS:
        matches = [n for n in names if n.strip().casefold() == wanted]
        if matches:
            return matches[0]
    return None


def scheme_change(recorded: IdScheme, chosen: IdScheme, finished: int) -> str:
    """Why a folder refuses another id scheme: its finished rows would be paid for again."""
    rows = f"the {finished} rows of its ledger"
    return (
        f"this output folder's row ids are {recorded.describe()}; reading them as "
        f"{chosen.describe()} would give {rows} other ids, so they would be sent (and paid "
        "for) again. Keep the folder's ids (drop --id-column, or give "
        + (f"--id-column {recorded.column!r}" if recorded.column else "no id column")
        + "), or use a new --out; `nanobatch validate --out DIR` shows what a run would send"
    )


def _find(names: Sequence[str], wanted: str, *, exact_case: bool = True) -> str | None:
    if wanted in names:
        return wanted
    if not exact_case or normalise(wanted) != wanted:
        matches = [n for n in names if normalise(n) == normalise(wanted)]
        return matches[0] if matches else None
    matches = [n for n in names if n.casefold() == wanted.casefold()]
    return matches[0] if matches else None


def ids_of(batch: pa.RecordBatch, raw: pa.RecordBatch, scheme: IdScheme) -> pa.Array:
    """The ids of a batch: ``batch`` has known columns under their names, ``raw`` as read."""
    if scheme.column is not None:
        return column_text(raw.column(scheme.column))
    if scheme.derived == "v1":
        return pa.array([derive_v1(row) for row in raw.to_pylist()], type=pa.string())
    return pa.array([derive_v2(row) for row in batch.to_pylist()], type=pa.string())


def column_text(values: pa.Array) -> pa.Array:
    """A column's values as id text: 00123 stays 00123, a number 123 (or 123.0) is "123"."""
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        return pc.utf8_trim_whitespace(values.cast(pa.string()).fill_null(""))
    return pa.array([text(v) for v in values.to_pylist()], type=pa.string())


def text(value: object) -> str:
    """One value as text, the same whichever format it was read from."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return ";".join(text(v) for v in value)
    return str(value).strip()


def _images_text(value: object) -> str:
    # Not rows' image-list parser: that one may learn new hints and rules, and an id derived
    # from a row must never change with them (every done row would be sent again).
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            try:
                value = json.loads(stripped)
            except ValueError:
                return stripped
        else:
            value = stripped.split(";")
    if isinstance(value, list):
        return ";".join(p for p in (text(v) for v in value) if p)
    return text(value)


def derive_v2(row: dict[str, Any]) -> str:
    """A row's id from all its values as text (format-independent)."""
    content = sorted(
        (normalise(name), _images_text(value) if name == "images" else text(value))
        for name, value in row.items()
    )
    kept = [pair for pair in content if pair[1]]
    digest = hashlib.sha256(json.dumps(kept, ensure_ascii=False).encode()).hexdigest()
    return f"row-{digest[:16]}"


def derive_v1(row: dict[str, Any]) -> str:
    """The id derived before v2; kept byte for byte for folders made with it."""
    content = [row.get(name) for name in _V1_CONTENT]
    digest = hashlib.sha256(json.dumps(content, default=str).encode()).hexdigest()
    return f"row-{digest[:16]}"


def load(out_dir: Path, ledger_ids: Iterable[pa.Array] = ()) -> tuple[IdScheme | None, int]:
    """The folder's scheme and how many rows its ledger holds: (None, 0) for a folder with
    no rows yet (any scheme will do). Without a record (a folder from before it), inferred
    from the ledger's ids."""
    rows = 0
    legacy = True  # every id looks derived the v1 way
    for chunk in ledger_ids:
        rows += len(chunk)
        if legacy and len(chunk):
            legacy = bool(pc.all(pc.match_substring_regex(chunk, _V1_ID.pattern)).as_py())
    if not rows:
        return None, 0
    try:
        state = json.loads((out_dir / ID_FILE).read_text(encoding="utf-8"))
        return IdScheme(state.get("column"), state.get("derived") or "v2"), rows
    except FileNotFoundError:
        # Before the record, ids came from a column named id or were derived the v1 way.
        return (IdScheme(derived="v1") if legacy else IdScheme("id")), rows
    except (OSError, ValueError, AttributeError) as e:
        raise UsageError(
            f"{out_dir / ID_FILE} cannot be read ({e}); it records how this "
            "folder's row ids are read: restore it"
        ) from None


def save(out_dir: Path, scheme: IdScheme) -> None:
    write_atomic(out_dir / ID_FILE, json.dumps(scheme.to_json(), indent=1).encode())
