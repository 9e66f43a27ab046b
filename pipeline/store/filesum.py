"""Whole-file checksums kept beside the ledger's Parquet files (``ledger.parquet.sha256``).

Parquet's page checksums cover data pages, not the footer (schema, offsets, statistics), so a
flipped byte there can go unnoticed or be misread. Each Parquet file the ledger writes gets the
SHA-256 of its bytes in a text file beside it, in ``sha256sum`` format (``sha256sum -c`` checks
it). Replacing a file is two renames, so the digest file first lists both the old file's digest
and the new one, and only the new one once the new file is in place: a crash between the two
leaves a digest file that vouches for whichever file is there. A Parquet file without a digest
file (written by an older version) is not checked.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pipeline.store.storage import create_new

SUFFIX = ".sha256"


def sum_path(path: Path) -> Path:
    return path.with_name(path.name + SUFFIX)


def file_digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def listed(path: Path) -> set[str] | None:
    """The digests the digest file accepts for ``path``; None when there is no digest file."""
    try:
        text = sum_path(path).read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return None
    return {line.split()[0] for line in text.splitlines() if line.strip()}


def _write(path: Path, digests: list[str]) -> None:
    lines = "".join(f"{digest}  {path.name}\n" for digest in digests)
    write_small(sum_path(path), lines.encode(), path.parent)


def write_small(target: Path, data: bytes, tmp_dir: Path) -> None:
    """Replace ``target`` atomically and durably with a few bytes of the ledger's own
    bookkeeping (digests, the provenance mark). Not through ``storage.write_all``, which writes
    outputs: bookkeeping is written like the Parquet file it goes with. The temp file is a
    ``.tmp-*`` in ``tmp_dir``, removed on the next open if a crash leaves it."""
    fd, name = create_new(tmp_dir, ".tmp-", 0o600, make_folder=False)  # as mkstemp: 0600
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(name, target)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def replace(tmp: Path, path: Path) -> None:
    """``os.replace(tmp, path)``, keeping ``path``'s digest file true at every instant."""
    new = file_digest(tmp)
    old = sorted(listed(path) or ()) if path.exists() else []
    _write(path, [*old, new])
    os.replace(tmp, path)
    _write(path, [new])


def damage(path: Path) -> str | None:
    """Why ``path`` is not the file its digest file names, or None (also when it has none).

    The digest file is read before and after hashing, so a writer replacing the file meanwhile
    cannot make an intact file look damaged.
    """
    before = listed(path)
    if before is None:
        return None
    try:
        digest = file_digest(path)
    except FileNotFoundError:
        return None
    after = listed(path) or set()
    if digest in before | after:
        return None
    return f"its SHA-256 is not the one recorded in {sum_path(path).name}"


def damaged_message(path: Path, why: str) -> str:
    """What to do about a damaged ledger file (nothing paid for is lost by doing it)."""
    return (
        f"{path} is damaged ({why}): move it away (mv {path} {path}.damaged) and rerun; "
        "images on disk whose request is unchanged are adopted, not paid for again"
    )
