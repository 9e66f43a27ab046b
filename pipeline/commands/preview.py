"""``nanobatch validate --out DIR``: what a run on that folder would send now, and its cost.

The same plan a run makes (its id scheme, done rows skipped while their fingerprint matches,
``--rerun`` failed rows), against the folder's ledger as a run would see it (the journal of a
run that is going or crashed included), without the lock and without sending anything. Each
row to send is counted once under why it is sent: new, failed before, invalid before (checked
again), or done but its inputs changed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core.config import RunConfig
from pipeline.core.models import effective_size
from pipeline.core.prices import PriceTable
from pipeline.core.types import InvalidRow, Status
from pipeline.plan import rowids
from pipeline.plan.checkpass import check_pass, open_settled, raise_problems
from pipeline.plan.done import FINISHED, DoneRows
from pipeline.plan.planner import Planner
from pipeline.plan.planstate import recorded_name_template
from pipeline.plan.scan import check_options, scan
from pipeline.plan.sources import SourceCache
from pipeline.store.ledgerview import has_ledger, read_ledger_view


@dataclass(slots=True)
class Preview:
    """What a run on a folder would do now."""

    kept: int = 0  # done rows skipped: their inputs are unchanged
    send: Counter[str] = field(default_factory=Counter)  # why -> rows to send
    invalid: int = 0  # rows that would be recorded invalid (cost nothing)
    cost_usd: float = 0.0  # of the rows to send, one image each at standard prices
    refused_kept: int = 0  # refused rows left alone (--rerun refused would send them)
    renamed: str | None = None  # --name-template differs from the folder's: what that means

    def to_json(self) -> dict[str, Any]:
        return {
            "kept": self.kept,
            "send": sum(self.send.values()),
            "send_by_reason": dict(self.send),
            "invalid": self.invalid,
            "cost_usd": round(self.cost_usd, 4),
            "refused_kept": self.refused_kept,
            "name_template_note": self.renamed,
        }


def preview(config: RunConfig, prices: PriceTable) -> Preview:
    """Plan a run on ``config.out_dir`` without sending or writing anything."""
    out = config.out_dir
    statuses: dict[str, str] = {}
    done = DoneRows(pa.array([], pa.string()))
    if has_ledger(out):
        table = read_ledger_view(out, ["row_id", "status", "fingerprint"]).table
        statuses = dict(zip(table["row_id"].to_pylist(), table["status"].to_pylist(), strict=True))
        keep = pa.array([s.value for s in FINISHED if s not in config.rerun], pa.string())
        finished = table.filter(pc.is_in(table["status"], value_set=keep))
        done = DoneRows(
            finished["row_id"].combine_chunks(),
            _fingerprints=finished["fingerprint"].combine_chunks(),
        )
    recorded, rows = rowids.load(out, [pa.array(list(statuses), pa.string())])
    # A changed id scheme stops here, saying why. The rows are spooled outside the folder:
    # a preview writes nothing there.
    config, opened = open_settled(config, recorded, rows)
    check_options(config)
    found = Preview()
    with check_pass(config, opened, None) as checked:
        raise_problems(checked)
        to_do = scan(config, done, checked.ids)
        planner = Planner(config, done, SourceCache(max_bytes=0), to_do, checked.batches)
        for batch in planner:
            found.kept += batch.skipped
            for item in batch.items:
                if isinstance(item, InvalidRow):
                    found.invalid += 1
                    continue
                found.send[_why(statuses.get(item.row_id))] += 1
                size, route = effective_size(item), config.provider
                found.cost_usd += prices.per_image(item.model, size, tier=item.tier, route=route)
    recorded_names = recorded_name_template(out)
    if recorded_names is not None and recorded_names != (config.name_template,) and found.kept:
        found.renamed = (
            f"--name-template differs from the folder's ({recorded_names[0]!r}): its "
            f"{found.kept} done rows keep their file names; `nanobatch rename` renames them"
        )
    found.refused_kept = sum(
        1 for s in statuses.values() if s == Status.REFUSED.value
    ) if Status.REFUSED not in config.rerun else 0  # fmt: skip
    return found


def _why(status: str | None) -> str:
    return {
        None: "new",
        Status.FAILED.value: "failed before",
        Status.INVALID.value: "invalid before, now valid",
    }.get(status, "inputs changed")


def format_preview(found: Preview, out_dir: Path) -> str:
    """The preview for people, after validate's report."""
    sent = sum(found.send.values())
    why = ", ".join(f"{n} {reason}" for reason, n in found.send.most_common())
    lines = [
        f"a run on {out_dir} now would send {sent} rows (~${found.cost_usd:,.2f})"
        + (f": {why}" if why else ""),
        f"  {found.kept} done rows are skipped (their inputs are unchanged)",
    ]
    if found.invalid:
        lines.append(f"  {found.invalid} rows would be recorded invalid (cost nothing)")
    if found.refused_kept:
        lines.append(f"  {found.refused_kept} refused rows are kept (--rerun refused sends them)")
    if found.renamed:
        lines.append(f"  {found.renamed}")
    return "\n".join(lines)
