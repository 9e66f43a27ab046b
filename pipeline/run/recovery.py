"""Images on disk that the ledger does not know: adopted instead of paid for again.

A run writes a row's images, then its ledger record. A kill between the two, a journal record
damaged on disk, or a damaged ledger moved away leaves paid-for images the ledger does not
know. Whenever a pending row has a provenance record (``provenance``) whose fingerprint is the
row's current request and whose files are all there, intact, the row is adopted: recorded as
succeeded, reason ``ADOPTED``, without sending it again, at the cost the record says it was
billed (with its tier and batch job), so the ledger's cost stays what the server billed. That
costs a lookup in the journal's index (which reads on only as the journal grows) and one failed
``stat`` (an older version's record file) per pending row, no listing of the images folder.

Images from before provenance records (no record) are adopted by file name only after a run
that did not close cleanly, as before; the images folder is then listed, and files no row of
the manifest claims are moved to ``DIR/orphans/``. An image without a record written since the
folder began keeping them (``provenance.records_since``) lost its record to a power cut and is
not adopted by name; a row's claimed files it does not adopt are moved to ``DIR/orphans/`` as
its row is planned, before its new image takes the name. Nothing there is ever replaced.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import structlog

from pipeline.core.mime import type_of_extension
from pipeline.core.types import Job, Status
from pipeline.plan.fingerprint import request_fingerprint
from pipeline.plan.sources import SourceCache, SourceImageError
from pipeline.store import provenance
from pipeline.store.ledger import Ledger, LedgerRecord
from pipeline.store.storage import IMAGES_DIR, image_files, image_size

log = structlog.get_logger("nanobatch")

ORPHANS_DIR = "orphans"
_NUMBERED = re.compile(r"^(?P<id>.+)_(?P<n>\d+)$")


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


def own_files(out_dir: Path, files: list[str], stem: str) -> list[str]:
    """``files`` less those a provenance record gives to another row: row ``a`` claims
    ``a_2.png`` by name (its second image would be called so), but row ``a_2`` may have made
    it, and then it is ``a_2``'s to adopt, never ``a``'s to take or set aside."""
    mine = []
    for rel in files:
        found = provenance.of_file(out_dir, rel)
        if found is None or found[0] == stem:
            mine.append(rel)
    return mine


def _number(rel: str) -> int:
    match = _NUMBERED.match(rel.rsplit("/", 1)[-1].rsplit(".", 1)[0])
    return int(match["n"]) if match else 0


def adoptable(
    job: Job,
    by_name: list[str],
    out_dir: Path,
    sources: SourceCache,
    recorded: Callable[[str], list[str] | None],
    *,
    records_since: float | None = None,
) -> LedgerRecord | None:
    """A succeeded record for images on disk that ``job``'s current request made, or None.

    ``by_name``: the files a crashed run left with the row's name, adopted without a record
    only when older than ``records_since`` (``provenance.records_since``; None: any age), as
    images from before records are. ``recorded``: the checksums the ledger already records
    for a row, so a row sent again on purpose (``--rerun succeeded``) does not adopt its own
    image.
    """
    made = provenance.read(out_dir, job.output_stem)
    if made is None:
        if not by_name or _since(out_dir, by_name, records_since):
            return None  # a newer one lost its record: what made it is not known
        return adopt(job, by_name, out_dir, sources)
    if made.fingerprint is None or not made.files:
        return None  # rejected by verify --fix
    try:
        current = request_fingerprint(job, sources)
    except (SourceImageError, OSError):
        return None  # the row will fail as invalid when it is sent
    digests = [digest for _, digest in made.files]
    if current != made.fingerprint or recorded(job.row_id) == digests:
        return None
    files = [rel for rel, _ in made.files]
    adopted = adopt(job, files, out_dir, sources, expected=digests, made_by=current)
    if adopted is None:
        return None
    return replace(adopted, cost_usd=made.cost_usd, tier=made.tier, batch_job=made.batch_job)


def _since(out_dir: Path, files: list[str], since: float | None) -> bool:
    """Whether any of ``files`` was written at or after ``since``."""
    if since is None:
        return False
    for rel in files:
        try:
            if (out_dir / rel).stat().st_mtime >= since:
                return True
        except OSError:
            continue  # adoption finds it missing
    return False


def adopt(
    job: Job,
    files: list[str],
    out_dir: Path,
    sources: SourceCache,
    *,
    expected: list[str] | None = None,
    made_by: str | None = None,
) -> LedgerRecord | None:
    """A succeeded record for images a run received but did not record; None if a file is
    missing or differs from its ``expected`` checksum."""
    digests = []
    width = height = None
    for i, rel in enumerate(files):
        try:
            data = (out_dir / rel).read_bytes()
        except OSError:
            return None
        digests.append(hashlib.sha256(data).hexdigest())
        if expected is not None and digests[-1] != expected[i]:
            return None
        if i == 0:
            width, height = image_size(data)
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
        mime_type=type_of_extension(files[0].rsplit(".", 1)[-1]),
        text="found on disk, made by this request; recorded without sending it again",
        fingerprint=made_by or request_fingerprint(job, sources),
        metadata=job.metadata,
    )


def recorded_digests(ledger: Ledger) -> dict[str, list[str]]:
    """The checksums of each succeeded row's files, as the ledger records them."""
    found: dict[str, list[str]] = {}
    for batch in ledger.iter_batches(["row_id", "status", "sha256"]):
        for row_id, status, digests in zip(*(c.to_pylist() for c in batch.columns), strict=True):
            if status == Status.SUCCEEDED.value:
                found[row_id] = digests or []
    return found


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
                moved = _unused(target / rel.split("/", 1)[1])
                moved.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, moved)
        log.warning("run.orphans_set_aside", count=len(files), folder=str(target))
    return len(files)


def _unused(path: Path) -> Path:
    """``path``, or ``name.N.ext`` beside it if a file set aside earlier holds the name (two
    crashes may each leave a paid image of the same name: both are kept)."""
    n = 0
    candidate = path
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}.{n}{path.suffix}")
    return candidate
