"""What this run has to do: the manifest's rows minus the ones the ledger says are done.

Rows are filtered a batch at a time with a vectorised ``is_in`` against the done ids, so
a resumed run over a huge, mostly finished manifest never builds Python objects for the
rows it skips.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config import RunConfig
from pipeline.errors import UsageError
from pipeline.ledger import Ledger
from pipeline.manifest import Defaults, RowResolver, check_ids, read_batches
from pipeline.types import InvalidRow, Job, Status

# Statuses a rerun leaves alone by default: a success is paid for, a refusal would be again.
DONE_STATUSES = (Status.SUCCEEDED.value, Status.REFUSED.value)


@dataclass(frozen=True, slots=True)
class PlannedBatch:
    """The pending rows of one manifest batch, and how many were skipped as already done."""

    items: list[Job | InvalidRow]
    skipped: int


def done_ids(ledger: Ledger) -> pa.Array:
    """Ids of rows whose last outcome means they are not to be sent again."""
    table = ledger.read(["row_id", "status"])
    if table is None:
        return pa.array([], type=pa.string())
    done = table.filter(pc.is_in(table["status"], value_set=pa.array(DONE_STATUSES)))
    return done["row_id"].combine_chunks()


def check_manifest(config: RunConfig) -> None:
    """Whole-manifest problems that must stop the run before anything is sent."""
    problems = check_ids(config.manifest, config.batch_rows, config.limit)
    if problems:
        raise UsageError(f"{config.manifest}: " + "; ".join(problems))


def plan(config: RunConfig, done: pa.Array) -> Iterator[PlannedBatch]:
    """The rows to send (or to record as invalid), one manifest batch at a time."""
    resolver = RowResolver(
        config.manifest.resolve().parent,
        Defaults(config.model, config.image_size, config.aspect_ratio),
    )
    for batch in read_batches(config.manifest, config.batch_rows, config.limit):
        keep = pc.invert(pc.is_in(batch.ids, value_set=done))
        indices = pc.indices_nonzero(keep)
        skipped = batch.table.num_rows - len(indices)
        if not len(indices):
            yield PlannedBatch([], skipped)
            continue
        rows = batch.table.take(indices).to_pylist()
        ids = batch.ids.take(indices).to_pylist()
        items = [
            resolver.resolve(row_id, batch.first_line + index, row)
            for row_id, index, row in zip(ids, indices.to_pylist(), rows, strict=True)
        ]
        yield PlannedBatch(items, skipped)
