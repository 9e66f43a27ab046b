"""Spend so far in an output directory: what every attempt recorded there cost, over all runs.

``--max-cost`` caps a whole job, not one invocation, so a run starts from this figure; the
summary, ``status.json`` and ``nanobatch status`` show it against the cap. It is the sum of the
attempt history's ``cost_usd`` (``attempts.parquet`` plus the journal of a run going on or
crashed), not of the ledger's ``cost_usd``, which holds only the last run of each row and nothing
for a row still pending after paid attempts. Both files are read a row group or a line at a
time, so memory does not grow with the history.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.core.errors import UsageError
from pipeline.store import attempts
from pipeline.store.ledger import ATTEMPTS_FILE, LEDGER_FILE


def spent_in(out_dir: Path) -> float:
    """USD, by the price table, of every attempt recorded in ``out_dir`` (0 for a new one).

    Attempts recorded before attempts carried their cost count as their row's ``cost_usd`` in
    the ledger: the best figure such a directory kept.
    """
    total = 0.0
    uncosted: set[str] = set()  # rows with an attempt recorded without its cost
    for batch in _attempt_batches(out_dir):
        if "cost_usd" not in batch.schema.names:
            uncosted.update(batch.column("row_id").to_pylist())
            continue
        costs = batch.column("cost_usd")
        total += pc.sum(costs).as_py() or 0.0
        if costs.null_count:
            uncosted.update(batch.column("row_id").filter(pc.is_null(costs)).to_pylist())
    for record in attempts.journal_records(out_dir):  # a damaged one's cost is lost with it
        cost = record.get("cost_usd")
        if isinstance(cost, int | float):
            total += cost
        elif isinstance(row_id := record.get("row_id"), str):
            uncosted.add(row_id)
    if uncosted:
        total += _ledger_cost(out_dir / LEDGER_FILE, uncosted)
    return total


def _attempt_batches(out_dir: Path) -> Iterator[pa.RecordBatch]:
    try:
        yield from attempts.folded_batches(out_dir, ["row_id", "cost_usd"])
    except (pa.ArrowInvalid, OSError) as e:
        raise UsageError(
            f"{out_dir / ATTEMPTS_FILE} is not readable ({e}): the spend so far in this "
            "directory, which --max-cost counts, cannot be known; restore it or move it away"
        ) from None


def _ledger_cost(path: Path, rows: set[str]) -> float:
    if not path.exists():
        return 0.0
    wanted = pa.array(sorted(rows), pa.string())
    total = 0.0
    try:
        source = pq.ParquetFile(path, memory_map=True)
        for batch in source.iter_batches(columns=["row_id", "cost_usd"], use_threads=False):
            mask = pc.is_in(batch.column("row_id"), value_set=wanted)
            total += pc.sum(batch.column("cost_usd").filter(mask)).as_py() or 0.0
    except (pa.ArrowInvalid, OSError, KeyError) as e:
        raise UsageError(f"{path} is not a readable ledger ({e}); move it away") from None
    return total
