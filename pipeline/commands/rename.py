"""``nanobatch rename``: give finished rows' images the names the manifest makes now.

A run never renames what it made before: after ``--name-template`` (or the ``output_name``
column) changes, finished rows keep their old names and only new rows follow the new scheme.
This moves the finished rows' files to their new names and records the new paths in the
ledger, sending nothing. Each group of files is renamed before its records are written; a
crash in between leaves the renamed files unrecorded, and the next run moves them to
``DIR/orphans/`` (kept, never deleted).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.core.config import RunConfig
from pipeline.core.errors import UsageError
from pipeline.plan import rowids
from pipeline.plan.checkpass import open_settled
from pipeline.plan.names import name_limit, name_problem, output_name, template_fields
from pipeline.plan.planstate import name_template_change
from pipeline.store.diskspace import open_ledger
from pipeline.store.ledger import Ledger, LedgerRecord
from pipeline.store.ledgerview import require_ledger
from pipeline.store.storage import IMAGES_DIR, make_folders

_GROUP = 256  # rows renamed per ledger append


@dataclass(slots=True)
class Renamed:
    """What ``rename`` did."""

    rows: int = 0  # rows whose files now have new names
    files: int = 0
    unchanged: int = 0  # finished rows whose name is already the current one
    skipped: list[str] = field(default_factory=list)  # "row id: why", left as they were


def new_paths(paths: list[str], stem: str) -> list[str]:
    """The row's files under ``stem``, keeping each file's extension and numbering."""
    exts = [p.rsplit(".", 1)[-1] if "." in p.rsplit("/", 1)[-1] else "bin" for p in paths]
    if len(paths) == 1:
        return [f"{IMAGES_DIR}/{stem}.{exts[0]}"]
    return [f"{IMAGES_DIR}/{stem}_{n}.{ext}" for n, ext in enumerate(exts, 1)]


def rename(config: RunConfig) -> Renamed:
    """Rename every finished row's files to the name the manifest gives it now."""
    try:
        required = template_fields(config.name_template) if config.name_template else []
    except ValueError as e:
        raise UsageError(str(e)) from None
    require_ledger(config.out_dir)
    ledger = Ledger(config.out_dir)
    open_ledger(ledger)  # the lock: no run may write meanwhile
    try:
        table = ledger.read()
        made = {r["row_id"]: r for r in (table.to_pylist() if table else []) if r["output_paths"]}
        # The ids as the folder's runs read them (its recorded id scheme), not as guessed now.
        recorded, rows = rowids.load(config.out_dir, table["row_id"].chunks if table else [])
        config, opened = open_settled(config, recorded, rows)  # the header read once
        result = Renamed()
        limit = name_limit(config.out_dir)
        group: list[LedgerRecord] = []
        for batch in opened.rows(required):
            for row_id, row in zip(batch.ids.to_pylist(), batch.table.to_pylist(), strict=True):
                record = made.pop(row_id, None)
                if record is not None:
                    moved = _move(
                        config.out_dir,
                        record,
                        row,
                        template=config.name_template,
                        limit=limit,
                        result=result,
                    )
                    group += [moved] if moved else []
                if len(group) >= _GROUP:
                    ledger.append(group)
                    group = []
        ledger.append(group)
        name_template_change(config.out_dir, config.name_template)  # now the folder's scheme
        return result
    finally:
        ledger.close()


def _move(
    out_dir: Path,
    record: dict[str, Any],
    row: dict[str, Any],
    *,
    template: str | None,
    limit: int,
    result: Renamed,
) -> LedgerRecord | None:
    """Rename one row's files; its updated record, or None if nothing moved."""
    row_id = record["row_id"]
    stem = output_name(row, template) or row_id
    old, new = record["output_paths"], new_paths(record["output_paths"], stem)
    if old == new:
        result.unchanged += 1
        return None
    why = name_problem(stem, limit)
    if why is None and any((out_dir / p).exists() for p in new if p not in old):
        why = "a file already has the new name"
    if why is None and not all((out_dir / p).is_file() for p in old):
        why = "its files are not all there (run `nanobatch verify`)"
    if why is not None:
        result.skipped.append(f"{row_id}: {why}")
        return None
    for source, target in zip(old, new, strict=True):
        make_folders(out_dir / IMAGES_DIR, (out_dir / target).parent)
        os.replace(out_dir / source, out_dir / target)
    result.rows += 1
    result.files += len(new)
    return replace(LedgerRecord(**record), output_paths=new)
