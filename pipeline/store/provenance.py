"""Which request made each image: a small record per row beside its images.

``DIR/provenance/<name>`` (``<name>``: the row's file name stem, never longer than an image's
name) holds, as JSON, the row id, the fingerprint of the request that made the images, each
image's path and SHA-256, and what the answer was billed (its cost, the tier it was billed at,
the batch job that answered it). It is written (atomically) before the images, so no image of
this version is ever on disk without it, nor without what it cost. With it, images the ledger
does not know (a crash before their record, a journal record damaged on disk, a damaged ledger
moved away) are adopted only when the row's current request is the one that made them (an edited
prompt's old image is never taken for the new one), and at the cost they were billed, so the
ledger's cost still equals the bill after a kill between an answer and its record. ``verify
--fix`` rewrites the record of files it found broken without a fingerprint, so they are never
adopted. Images from before these records existed have none; ``records_since`` tells them from
images whose record a power cut lost (the kernel writes folders back in any order, so an
image's entry may persist and its record's not), which are never taken for a row by name.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import orjson

from pipeline.core.types import ImagePart
from pipeline.store.filesum import write_small
from pipeline.store.storage import (
    TMP_DIR,
    StoredImage,
    fsync_dir,
    make_folders,
    output_names,
    store_images,
)

PROVENANCE_DIR = "provenance"  # beside images/, which keeps only images
# In provenance/: made by the first run that keeps a record for every image (a row whose file
# name is this too would only move the date on, and a row name never starts with "." unless
# its id does).
SINCE_FILE = ".records-since"


@dataclass(frozen=True, slots=True)
class Provenance:
    """What made one row's images."""

    row_id: str
    fingerprint: str | None  # None: rejected by verify --fix, never to be adopted
    files: tuple[tuple[str, str], ...]  # (path relative to the output directory, sha256)
    # What the answer was billed (None: a record from before costs were kept, or verify's).
    cost_usd: float | None = None
    tier: str | None = None  # the tier it was billed at ("batch" for a batch job's result)
    batch_job: str | None = None  # the batch job that answered it


def folder(out_dir: Path) -> Path:
    return out_dir / PROVENANCE_DIR


def any_records(out_dir: Path) -> bool:
    """Whether any row of ``out_dir`` has a record (a first run has none to look up)."""
    try:
        with os.scandir(folder(out_dir)) as entries:
            return any(entry.name != SINCE_FILE for entry in entries)
    except OSError:
        return False


def records_since(out_dir: Path) -> float:
    """Since when (a file time) every image ``out_dir`` gets has its record written first:
    the time of a mark the first run of a version that knows it leaves (now, for a folder
    without one). An image without a record written since then had one, lost to a power cut;
    older ones may be from before records existed."""
    mark = folder(out_dir) / SINCE_FILE
    try:
        return mark.stat().st_mtime
    except FileNotFoundError:
        pass
    _make_folders(out_dir, mark.parent)
    write_small(mark, b"", out_dir / TMP_DIR)
    fsync_dir(mark.parent)  # durable before this run writes an image
    return mark.stat().st_mtime


def _make_folders(out_dir: Path, parent: Path) -> None:
    """``provenance/`` and the sub-folders down to ``parent``, each durable in its own parent
    (``storage.make_folders``, which also refuses a link on the way), and the temp folder."""
    top = folder(out_dir)
    if not top.is_dir():
        top.mkdir(exist_ok=True)
        fsync_dir(out_dir)
    make_folders(top, parent)
    (out_dir / TMP_DIR).mkdir(exist_ok=True)


def read(out_dir: Path, stem: str) -> Provenance | None:
    """The record of the row whose file name stem is ``stem``; None if none (or unreadable)."""
    try:
        data = json.loads((folder(out_dir) / stem).read_bytes())
        files = tuple((str(rel), str(digest)) for rel, digest in data["files"])
        fingerprint = data["fingerprint"]
        cost, tier, batch_job = data.get("cost_usd"), data.get("tier"), data.get("batch_job")
        return Provenance(
            str(data["row_id"]),
            None if fingerprint is None else str(fingerprint),
            files,
            cost_usd=float(cost) if isinstance(cost, int | float) else None,
            tier=tier if isinstance(tier, str) else None,
            batch_job=batch_job if isinstance(batch_job, str) else None,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def write(out_dir: Path, stem: str, record: Provenance) -> None:
    data: dict[str, object] = {"row_id": record.row_id, "fingerprint": record.fingerprint,
                               "files": [list(f) for f in record.files]}  # fmt: skip
    billed = {"cost_usd": record.cost_usd, "tier": record.tier, "batch_job": record.batch_job}
    data.update((key, value) for key, value in billed.items() if value is not None)
    path = folder(out_dir) / stem  # a stem with "/" (a name template's folders) nests likewise
    encoded, tmp_dir = orjson.dumps(data), out_dir / TMP_DIR  # UTF-8, as json's ensure_ascii=False
    try:
        write_small(path, encoded, tmp_dir)
    except FileNotFoundError:
        # A folder not made yet: made now, not checked before every record (a mkdir and a
        # stat per folder per row, each a hand-off between threads; docs/benchmarks.md).
        _make_folders(out_dir, path.parent)
        write_small(path, encoded, tmp_dir)


def store(
    out_dir: Path,
    stem: str,
    images: tuple[ImagePart, ...],
    *,
    row_id: str,
    fingerprint: str,
    cost_usd: float | None = None,
    tier: str | None = None,
    batch_job: str | None = None,
) -> list[StoredImage]:
    """``store_images``, with the record of the request that made them (and of what it was
    billed) written first."""
    names = output_names(stem, images)
    digests = [image.sha256 for image in images]
    files = tuple(zip(names, digests, strict=True))
    write(out_dir, stem, Provenance(row_id, fingerprint, files, cost_usd, tier, batch_job))
    return store_images(out_dir, stem, images)


def stems(rel: str) -> list[str]:
    """The stems a row whose image is ``rel`` may have (``<stem>_<n>.<ext>`` for several)."""
    name = rel.split("/", 1)[-1].rsplit(".", 1)[0]  # "images/" off; "category/sku" stays
    base, sep, n = name.rpartition("_")
    return [name, base] if sep and n.isdigit() and base else [name]


def of_file(out_dir: Path, rel: str) -> tuple[str, Provenance] | None:
    """The stem and record that list the image ``rel``, if any."""
    for stem in stems(rel):
        record = read(out_dir, stem)
        if record is not None and any(path == rel for path, _ in record.files):
            return stem, record
    return None


def reject(out_dir: Path, row_id: str, rel_paths: list[str], digests: list[str]) -> None:
    """Mark a row's files broken, never to be adopted (also images from before records)."""
    if not rel_paths:
        return
    found = of_file(out_dir, rel_paths[0])
    stem = found[0] if found else stems(rel_paths[0])[0 if len(rel_paths) == 1 else -1]
    files = found[1].files if found else tuple(zip(rel_paths, digests, strict=False))
    write(out_dir, stem, Provenance(row_id, None, files))
