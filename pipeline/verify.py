"""``nanobatch verify``: check that every succeeded row's files are there, intact and images.

With ``fix``, broken rows are recorded as failed (reason ``VERIFY_FAILED``) so the next run
regenerates them, and their damaged files are moved to ``DIR/broken/`` (kept, not deleted:
they were paid for, and a person may want to look at them).
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image

from pipeline.journal import Damaged
from pipeline.ledger import Ledger, LedgerRecord
from pipeline.ledgerview import read_ledger_view, require_ledger
from pipeline.storage import IMAGES_DIR, image_files
from pipeline.types import Status

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
    unreferenced: list[str]  # files under images/ that no ledger row names
    live: bool = False  # the journal had records: a run is going, or the last one crashed
    damaged: tuple[Damaged, ...] = ()  # journal records lost to damage on disk


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
    return VerifyResult(
        len(rows), len(checks), problems, sorted(present - referenced), view.live, view.damaged
    )


def fix(out_dir: Path, problems: list[Problem]) -> int:
    """Record broken rows as failed so the next run regenerates them; returns how many."""
    broken_ids = {p.row_id for p in problems}
    if not broken_ids:
        return 0
    ledger = Ledger(out_dir)
    ledger.open()
    try:
        table = ledger.read()
        assert table is not None
        rows: list[dict[str, Any]] = [r for r in table.to_pylist() if r["row_id"] in broken_ids]
        why = {p.row_id: f"{p.path or 'row'}: {p.what}" for p in problems}
        records = []
        for row in rows:
            _move_aside(out_dir, row["output_paths"] or [])
            record = LedgerRecord(**row)
            records.append(
                replace(
                    record,
                    status=Status.FAILED.value,
                    reason="VERIFY_FAILED",
                    output_paths=[],
                    sha256=[],
                    error=f"verify: {why[row['row_id']]}",
                    finished_at=datetime.now(UTC),
                )
            )
        ledger.append(records)
    finally:
        ledger.close()
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
    if result.unreferenced:
        lines.append(f"  {len(result.unreferenced)} files under images/ belong to no ledger row")
    return "\n".join(lines)
