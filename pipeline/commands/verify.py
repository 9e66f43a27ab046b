"""``nanobatch verify``: check that every succeeded row's files are there, intact and images.

The ledger is read as a run would read it (``ledgerview``: the Parquet file and the journal
of a run that is going or crashed). Files under ``images/`` that no record names are either
*unrecorded* (a provenance record lists them: a run received them and was killed, or is about
to record them; the next run adopts them) or *strays*.

``fix`` takes the directory's lock (refused while a run holds it), checks again under it,
and records broken rows as failed (reason ``VERIFY_FAILED``) so the next run regenerates them.
Their damaged files are moved to ``DIR/broken/`` (kept: they were paid for, and a person may
want to look at them), strays to ``DIR/orphans/``; a file that a record names never moves.
Order, so that a SIGKILL at any instant leaves no succeeded row without its image: the broken
files' provenance records are marked (never adopted again), then the failure records are made
durable, and only then are files moved.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image

from pipeline.core.errors import OutDirLocked
from pipeline.core.types import Status
from pipeline.run.recovery import set_aside
from pipeline.store import provenance
from pipeline.store.journal import Damaged
from pipeline.store.ledger import JOURNAL_FILE, Ledger, LedgerRecord
from pipeline.store.ledgerview import read_ledger_view, require_ledger
from pipeline.store.storage import IMAGES_DIR, image_files

BROKEN_DIR = "broken"


@dataclass(frozen=True, slots=True)
class Problem:
    row_id: str
    path: str
    what: str


@dataclass(frozen=True, slots=True)
class VerifyResult:
    checked_rows: int
    checked_files: int
    problems: list[Problem]
    unreferenced: list[str]  # files under images/ that no record names, nor a provenance record
    live: bool = False  # the journal had records: a run is going, or the last one crashed
    damaged: tuple[Damaged, ...] = ()  # journal records lost to damage on disk
    unrecorded: list[str] = field(default_factory=list)  # received, not recorded: adopted next


@dataclass(frozen=True, slots=True)
class FixResult:
    found: VerifyResult  # what verify found, under the lock
    fixed: int  # broken rows recorded as failed (VERIFY_FAILED)
    strays_moved: int  # files no record names, moved to DIR/orphans/


def check_file(out_dir: Path, rel: str, expected_sha256: str) -> str | None:
    """Why the file is not what the ledger says, or None."""
    path = out_dir / rel
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return "missing"
    except OSError as e:
        return f"unreadable ({e.strerror})"
    if hashlib.sha256(data).hexdigest() != expected_sha256:
        return "checksum differs from the ledger"
    try:
        with Image.open(path) as im:
            im.load()  # a full decode: a truncated file fails here, not at the header
    except Exception as e:  # Pillow raises many types for bad data; all mean "not an image"
        return f"does not decode as an image ({type(e).__name__})"
    return None


def verify(out_dir: Path, *, workers: int = 4) -> VerifyResult:
    """Check every succeeded row, journal included (a run may be going); read-only, no lock."""
    require_ledger(out_dir)
    # Listed before the ledger is read: an image is renamed into place before its record is
    # written, so a run going meanwhile cannot make a recorded image look unreferenced.
    images = out_dir / IMAGES_DIR
    present = (
        {
            f"{IMAGES_DIR}/{name}"
            for name in image_files(images)
            if not name.rsplit("/", 1)[-1].startswith(".")
        }
        if images.is_dir()
        else set()
    )
    view = read_ledger_view(out_dir, ["row_id", "status", "output_paths", "sha256"])
    table = view.table
    rows = [r for r in table.to_pylist() if r["status"] == Status.SUCCEEDED.value]
    checks = [
        (row["row_id"], rel, digest)
        for row in rows
        for rel, digest in zip(row["output_paths"] or [], row["sha256"] or [], strict=False)
    ]
    problems = [Problem(row["row_id"], "", "no output file recorded") for row in rows
                if not row["output_paths"]]  # fmt: skip
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda c: check_file(out_dir, c[1], c[2]), checks)
        pairs = zip(checks, results, strict=True)
        problems += [Problem(c[0], c[1], what) for c, what in pairs if what]
    referenced = {rel for paths in table["output_paths"].to_pylist() for rel in paths or []}
    unreferenced = sorted(present - referenced)
    unrecorded = [rel for rel in unreferenced if _adoptable(out_dir, rel)]
    strays = sorted(set(unreferenced) - set(unrecorded))
    return VerifyResult(
        len(rows), len(checks), problems, strays, view.live, view.damaged, unrecorded
    )


def _adoptable(out_dir: Path, rel: str) -> bool:
    found = provenance.of_file(out_dir, rel)
    return found is not None and found[1].fingerprint is not None


def fix(out_dir: Path) -> FixResult:
    """Under the directory's lock: record broken rows as failed so the next run regenerates
    them, and move their files and the strays aside."""
    require_ledger(out_dir)  # before the lock: never create files in a directory that is not ours
    ledger = Ledger(out_dir)
    try:
        ledger.open()  # also folds a crashed run's journal, as a run would
    except OutDirLocked:
        raise OutDirLocked(
            f"{out_dir} is in use by a running nanobatch: run verify --fix after it ends "
            "(plain verify reads it meanwhile)"
        ) from None
    crashed = ledger.crashed
    try:
        found = verify(out_dir)  # again, under the lock: nothing can change it now
        fixed = _fail_broken(ledger, found.problems)
        # After a crash, images from before provenance records may be adopted by name by the
        # next run: they stay where it looks for them.
        strays = 0 if crashed else set_aside(out_dir, {"": found.unreferenced})
    finally:
        ledger.close()
    if crashed:
        (out_dir / JOURNAL_FILE).touch()  # keep the unclean-shutdown mark for the next run
    return FixResult(found, fixed, strays)


def _fail_broken(ledger: Ledger, problems: list[Problem]) -> int:
    broken_ids = {p.row_id for p in problems}
    if not broken_ids:
        return 0
    out_dir = ledger.out_dir
    table = ledger.read()
    assert table is not None
    rows: list[dict[str, Any]] = [r for r in table.to_pylist() if r["row_id"] in broken_ids]
    why = {p.row_id: f"{p.path or 'row'}: {p.what}" for p in problems}
    for row in rows:
        paths, digests = row["output_paths"] or [], row["sha256"] or []
        provenance.reject(ledger.provenance, row["row_id"], paths, digests)
    ledger.provenance.sync()  # rejected before the failure records are made
    records = [
        replace(
            LedgerRecord(**row),
            status=Status.FAILED.value,
            reason="VERIFY_FAILED",
            output_paths=[],
            sha256=[],
            error=f"verify: {why[row['row_id']]}",
            finished_at=datetime.now(UTC),
        )
        for row in rows
    ]
    ledger.append(records)  # durable before any file moves
    for row in rows:
        _move_aside(out_dir, row["output_paths"] or [])
    return len(records)


def _move_aside(out_dir: Path, rel_paths: list[str]) -> None:
    target = out_dir / BROKEN_DIR
    for rel in rel_paths:
        source = out_dir / rel
        if source.exists():
            moved = target / rel.split("/", 1)[-1]  # sub-folders kept: names may repeat
            moved.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, moved)


def format_verify(result: VerifyResult, most: int = 50) -> str:
    """What verify found, for people (the first ``most`` problems)."""
    lines = [f"checked {result.checked_files} files of {result.checked_rows} succeeded rows"]
    lines += [f"  row {p.row_id}: {p.path or '-'} {p.what}" for p in result.problems[:most]]
    if len(result.problems) > most:
        lines.append(f"  ... and {len(result.problems) - most} more")
    if result.damaged:
        rows = ", ".join(r for d in result.damaged for r in d.row_ids) or "unreadable"
        lines.append(f"  {len(result.damaged)} journal records are damaged on disk (rows: {rows}); "
                     "the next run adopts their images or sends those rows again")  # fmt: skip
    if result.unrecorded:
        lines.append(f"  {len(result.unrecorded)} images are not recorded yet: the next run "
                     "adopts them if their rows' requests are unchanged")  # fmt: skip
    if result.unreferenced:
        lines.append(f"  {len(result.unreferenced)} files under images/ belong to no ledger row")
    return "\n".join(lines)
