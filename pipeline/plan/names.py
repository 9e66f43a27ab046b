"""Output file names: a row's stem from its ``output_name`` column or ``--name-template``,
made safe for any file system, and checked in bytes against the output file system's limit
(a name the disk refuses would be paid for and then lost)."""

from __future__ import annotations

import os
import re
import string
from pathlib import Path
from typing import Any

from pipeline.core.mime import MAX_EXTENSION

MAX_NAME_LENGTH = 150
NAME_MAX_BYTES = 255  # a file name's limit on nearly every file system (ext4, APFS, NTFS...)
# What a stem must leave room for: "_<n>" when a row returns several images, and ".<ext>".
_NAME_SUFFIX_BYTES = len("_99.") + MAX_EXTENSION
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def cell_text(value: object) -> str | None:
    """A manifest cell as text, stripped; None when it is empty."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def template_fields(template: str) -> list[str]:
    """The column names a ``{column}`` template uses."""
    try:
        return [name for _, name, _, _ in string.Formatter().parse(template) if name]
    except ValueError as e:
        raise ValueError(f"template {template!r} is not valid: {e}") from None


def fill(template: str, row: dict[str, Any]) -> str:
    """The template with the row's values (callers checked the columns exist)."""
    return template.format_map({k: "" if v is None else v for k, v in row.items()})


def safe_name(text: str) -> str:
    """A file name stem anyone's file system accepts."""
    name = _UNSAFE_NAME_CHARS.sub("_", text.strip()).strip("._")
    return name[:MAX_NAME_LENGTH]


def output_name(row: dict[str, Any], name_template: str | None) -> str | None:
    """The row's output file stem: its ``output_name`` column, else the name template.

    A ``/`` in the template or the column makes sub-folders (``"{category}/{sku}"``); a ``/``
    inside a column's value does not (it becomes ``_``, like any unsafe character). Each part
    is made safe on its own and empty parts go, so ``..``, a leading ``/`` or an empty column
    never lead outside ``images/``.
    """
    raw = cell_text(row.get("output_name"))
    if raw is not None:
        parts = raw.split("/")
    elif name_template:
        parts = [fill(part, row) for part in name_template.split("/")]
    else:
        return None
    return "/".join(name for name in map(safe_name, parts) if name)


def name_limit(out_dir: Path) -> int:
    """The file-name limit, in bytes, of the file system ``out_dir`` is (or will be) on."""
    for folder in (out_dir, *out_dir.absolute().parents):
        if folder.is_dir():
            try:
                return min(os.pathconf(folder, "PC_NAME_MAX"), NAME_MAX_BYTES)
            except (OSError, ValueError):
                break
    return NAME_MAX_BYTES


def name_problem(stem: str, name_max_bytes: int) -> str | None:
    """Why ``stem`` cannot name an output file (a part too long in bytes), or None."""
    limit = name_max_bytes - _NAME_SUFFIX_BYTES
    for part in stem.split("/"):
        size = len(part.encode())
        if size > limit:
            return (
                f"the file name {part[:40]!r}... is {size} bytes (UTF-8); this file system "
                f"takes {limit} before the extension: use a shorter id, an output_name column "
                "or --name-template"
            )
    return None
