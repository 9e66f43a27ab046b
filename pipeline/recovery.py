"""After a crash: images that were written but whose ledger record was not.

A run writes a row's images, then its ledger record. A kill between the two leaves paid-for
images that the ledger does not know. They are adopted (recorded as succeeded, reason
``ADOPTED``, without sending the row again) when their row is pending in this run, and moved
to ``DIR/orphans/`` when no row of the manifest claims them. Only done after a run that did
not close cleanly, so a normal resume never lists the images folder.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import structlog

from pipeline.ledger import Ledger, LedgerRecord
from pipeline.request import fingerprint, image_digest
from pipeline.sources import SourceCache
from pipeline.storage import IMAGES_DIR, image_files, image_size
from pipeline.types import Job, Status

log = structlog.get_logger("nanobatch")

ORPHANS_DIR = "orphans"
_NUMBERED = re.compile(r"^(?P<id>.+)_(?P<n>\d+)$")
_MIME = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}


def find_orphans(ledger: Ledger) -> dict[str, list[str]]:
    """Unrecorded image files, keyed by the row ids they could belong to."""
    table = ledger.read(["output_paths"])
    referenced: set[str] = set()
    if table is not None:
        for paths in table["output_paths"].to_pylist():
            referenced.update(paths or [])
    orphans: dict[str, list[str]] = {}
    folder = ledger.out_dir / IMAGES_DIR
    for name in sorted(image_files(folder)):
        rel = f"{IMAGES_DIR}/{name}"
        if name.rsplit("/", 1)[-1].startswith(".") or rel in referenced:
            continue
        stem = name.rsplit(".", 1)[0]  # "category/sku" for a name template with folders
        orphans.setdefault(stem, []).append(rel)
        if match := _NUMBERED.match(stem):
            orphans.setdefault(match["id"], []).append(rel)
    return orphans


def claim(orphans: dict[str, list[str]], job: Job) -> list[str]:
    """The orphan files that belong to ``job``, removed from ``orphans``."""
    files = orphans.pop(job.output_stem, [])
    single = [f for f in files if f.split("/", 1)[1].rsplit(".", 1)[0] == job.output_stem]
    chosen = single or sorted(files, key=_number)
    for paths in orphans.values():
        for f in chosen:
            if f in paths:
                paths.remove(f)
    return chosen


def _number(rel: str) -> int:
    match = _NUMBERED.match(rel.rsplit("/", 1)[-1].rsplit(".", 1)[0])
    return int(match["n"]) if match else 0


def adopt(job: Job, files: list[str], out_dir: Path, sources: SourceCache) -> LedgerRecord:
    """A succeeded record for images a crashed run received but did not record."""
    digests = []
    width = height = None
    for i, rel in enumerate(files):
        data = (out_dir / rel).read_bytes()
        digests.append(hashlib.sha256(data).hexdigest())
        if i == 0:
            width, height = image_size(data)
    ext = files[0].rsplit(".", 1)[-1].lower()
    log.warning("row.adopted", row_id=job.row_id, files=files)
    return LedgerRecord(
        row_id=job.row_id,
        line=job.line,
        status=Status.SUCCEEDED.value,
        reason="ADOPTED",
        model=job.model,
        prompt=job.prompt,
        image_size=job.image_size,
        aspect_ratio=job.aspect_ratio,
        output_paths=files,
        sha256=digests,
        width=width,
        height=height,
        mime_type=_MIME.get(ext, f"image/{ext}"),
        text="received before a crash and recorded on the next run",
        fingerprint=fingerprint(job, [image_digest(p, sources) for p in job.images]),
        metadata=job.metadata,
    )


def set_aside(out_dir: Path, orphans: dict[str, list[str]]) -> int:
    """Move files no row claimed to ``DIR/orphans/`` (kept: they were paid for)."""
    files = {f for paths in orphans.values() for f in paths}
    if files:
        target = out_dir / ORPHANS_DIR
        target.mkdir(exist_ok=True)
        for rel in sorted(files):
            source = out_dir / rel
            if source.exists():
                # Sub-folders are kept: two folders may each hold a file of the same name.
                moved = target / rel.split("/", 1)[1]
                moved.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, moved)
        log.warning("run.orphans_set_aside", count=len(files), folder=str(target))
    return len(files)
