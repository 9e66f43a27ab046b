"""Every row checked as a run would send it, nothing sent: what ``validate`` reports and what
``run --strict`` stops on. Both read the rows of the one pass over the manifest, so they agree
on which rows are invalid, and ``--strict`` costs no second parse."""

from __future__ import annotations

from pipeline.core.errors import UsageError
from pipeline.core.idscheme import IdScheme
from pipeline.core.types import InvalidRow
from pipeline.plan.checkpass import CheckedManifest
from pipeline.plan.done import nothing_done
from pipeline.plan.manifest import SHEET_ROWS, sheet_row
from pipeline.plan.planner import Planner
from pipeline.plan.scan import scan
from pipeline.plan.sources import SourceCache

SHOWN = 3  # invalid rows named in --strict's message


def every_row(checked: CheckedManifest, sources: SourceCache) -> Planner:
    """A plan of every row (within --limit and --ids) as if none were done."""
    config, none = checked.config, nothing_done()
    return Planner(config, none, sources, scan(config, none, checked.ids), checked.batches)


def strict_check(checked: CheckedManifest) -> None:
    """--strict: any invalid row stops the run before the first request."""
    config = checked.config
    invalid: list[InvalidRow] = []
    count = 0
    for batch in every_row(checked, SourceCache(max_bytes=0)):
        for item in batch.items:
            if isinstance(item, InvalidRow):
                count += 1
                if len(invalid) < SHOWN:
                    invalid.append(item)
    if count:
        shown = "; ".join(
            row_label(r.line, r.row_id, config.ids) + f" {r.field}: {r.reason}" for r in invalid
        )
        raise UsageError(
            f"--strict: {count} invalid rows, nothing sent. {shown}"
            + (" ..." if count > SHOWN else "")
            + f" ({SHEET_ROWS})"
        )


def row_label(line: int, row_id: str, ids: IdScheme | None) -> str:
    """``row 3 (SKU-1)``: the spreadsheet's row number, and the id when it is the user's own
    (a derived id is a hash that means nothing to anyone)."""
    if ids is not None and ids.column is None:
        return f"row {sheet_row(line)}"
    return f"row {sheet_row(line)} ({row_id})"
