"""Which manifest headers are nanobatch's known columns, as spreadsheets really spell them.

A header binds to a known column when it is one of its spellings: the same words in any case,
separated by spaces, underscores, hyphens or camelCase (``Aspect Ratio``, ``aspect-ratio``,
``imageSize``), or the obvious singular (``image`` for ``images``). The exact name always
binds, as it always did. Any other spelling binds only if its values parse for the column
(checked on the first batch of rows): a catalogue's own ``Size`` ("XL") or ``Model`` (a product
model) stays metadata, with a note that names both. A header close to a known column but not
one of its spellings (``Promt``) stays metadata with a note too.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyarrow as pa

from pipeline.core.models import ALIASES, MODELS
from pipeline.plan.rows import KNOWN_COLUMNS

# Other spellings accepted for a known column, besides case and separators.
_ALIASES = {"images": ("image",)}
# The id is chosen by the id scheme (see rowids), never by a spelling.
_NOT_BOUND_BY_SPELLING = frozenset({"id"})
_SAMPLE_SHOWN = 40  # characters of a value quoted in a note
_IMAGE_SUFFIXES = (
    ".png",
    ".jpg",
    ".jpeg",
    ".webp",
    ".heic",
    ".heif",
    ".gif",
    ".bmp",
    ".tif",
    ".tiff",
    ".avif",
)
_RATIO = re.compile(r"^\d{1,2}\s*:\s*\d{1,2}$")
_WXH = re.compile(r"^\d{2,5}\s*[xX×*]\s*\d{2,5}$")


def normalise(name: str) -> str:
    """``"Aspect Ratio"``, ``"aspect-ratio"``, ``"aspectRatio"`` -> ``"aspect_ratio"``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name.strip())
    return re.sub(r"[\s_\-.]+", "_", spaced).strip("_").lower()


def _compact(name: str) -> str:
    return normalise(name).replace("_", "")


_SPELLINGS: dict[str, str] = {
    _compact(spelling): known
    for known in KNOWN_COLUMNS - _NOT_BOUND_BY_SPELLING
    for spelling in (known, *_ALIASES.get(known, ()))
}


def _is_model(text: str) -> bool:
    name = text.removeprefix("models/")
    return name in MODELS or name in ALIASES or name.startswith("gemini-")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_images(text: str) -> bool:
    if text.startswith("["):
        try:
            return isinstance(json.loads(text), list)
        except ValueError:
            return False
    items = [p.strip().lower() for p in text.split(";") if p.strip()]
    return all("://" in p or p.endswith(_IMAGE_SUFFIXES) for p in items)


# What a value must look like for a variant spelling to bind (None: any text does).
_PARSES: dict[str, Callable[[str], bool]] = {
    "images": _is_images,
    "model": _is_model,
    "aspect_ratio": lambda t: _RATIO.match(t) is not None,
    "image_size": lambda t: t.upper() in ("512", "1K", "2K", "4K"),
    "size": lambda t: _WXH.match(t) is not None,
    "temperature": _is_number,
    "seed": lambda t: _is_number(t) and float(t).is_integer(),
    "tier": lambda t: t.lower() in ("standard", "flex", "priority"),
}
_WHAT = {
    "images": "image files or links",
    "model": "a model id",
    "aspect_ratio": "a ratio like 16:9",
    "image_size": "512, 1K, 2K or 4K",
    "size": "WIDTHxHEIGHT",
    "temperature": "a number",
    "seed": "a whole number",
    "tier": "standard, flex or priority",
}


@dataclass(frozen=True, slots=True)
class Binding:
    """Header -> known column, for the headers that bind; and what to tell the user once."""

    renames: dict[str, str]  # header as written -> known column name
    notes: tuple[str, ...]


def bind(names: Sequence[str], first: pa.RecordBatch) -> Binding:
    """Bind headers to known columns, checking variant spellings against ``first``'s values."""
    renames: dict[str, str] = {}
    notes: list[str] = []
    exact = set(names) & KNOWN_COLUMNS
    for name in names:
        if name in KNOWN_COLUMNS:
            continue
        known = _SPELLINGS.get(_compact(name))
        if known is None:
            close = difflib.get_close_matches(_compact(name), list(_SPELLINGS), n=1, cutoff=0.8)
            if close:
                notes.append(
                    f"column {name!r} is close to {_SPELLINGS[close[0]]!r} but is not one of "
                    f"its spellings: kept as metadata (rename it to {_SPELLINGS[close[0]]!r} "
                    "if it is meant to be that)"
                )
            continue
        if known in exact or known in renames.values():
            taken = known if known in exact else next(k for k, v in renames.items() if v == known)
            notes.append(
                f"columns {taken!r} and {name!r} both spell {known!r}: {taken!r} is used, "
                f"{name!r} is kept as metadata"
            )
            continue
        bad = _first_unparsed(known, first.column(name) if name in first.schema.names else None)
        if bad is not None:
            notes.append(
                f"column {name!r} looks like {known!r} but its values are not "
                f"{_WHAT[known]} (e.g. {bad[:_SAMPLE_SHOWN]!r}): kept as metadata; rename it "
                f"to {known!r} if it is meant to be that"
            )
            continue
        renames[name] = known
    return Binding(renames, tuple(notes))


def _first_unparsed(known: str, values: pa.Array | pa.ChunkedArray | None) -> str | None:
    """The first value that does not parse for ``known`` (None: all do, or any text does)."""
    parses = _PARSES.get(known)
    if parses is None or values is None:
        return None
    for value in values.to_pylist():
        if isinstance(value, list):
            continue  # a Parquet list column: only images can be one
        text = "" if value is None else str(value).strip()
        if text and not parses(text):
            return text
    return None


def rename(batch: pa.RecordBatch, renames: dict[str, str]) -> pa.RecordBatch:
    """The batch with bound headers under their known names."""
    if not renames:
        return batch
    names = [renames.get(n, n) for n in batch.schema.names]
    return pa.RecordBatch.from_arrays(batch.columns, names=names)
