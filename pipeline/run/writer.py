"""The one ledger writer of a run: records from the producer and the executor, made durable in
groups (one fsync for whatever is waiting), counted in the run's result once they are.

Every record of a run passes here, whichever executor made it, so the ledger has one writer
and the counters one place where a row becomes done.
"""

from __future__ import annotations

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream

from pipeline.run.executor import Durable, Record, RunServices
from pipeline.store.ledger import AttemptRecord, Ledger, LedgerRecord

log = structlog.get_logger("nanobatch")

BATCH_TIER = "batch"  # the ledger's tier of a row a batch job answered (run.batch.fold)


async def write(
    services: RunServices, ledger: Ledger, records: MemoryObjectReceiveStream[Record]
) -> None:
    """Append records to ``ledger`` until every sender closed its stream."""
    result = services.result
    async with records:
        async for first in records:
            group = [first]
            # Whatever else is already waiting shares this fsync (group commit).
            while True:
                try:
                    group.append(records.receive_nowait())
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break
            rows = [r for r in group if isinstance(r, LedgerRecord)]
            attempts = [r for r in group if isinstance(r, AttemptRecord)]
            written = not (rows or attempts) or await services.disk.append(ledger, rows, attempts)
            for mark in group:
                if isinstance(mark, Durable):  # every record sent before it is in this group
                    mark.ok = written
                    mark.written.set()
            if not written:
                # The disk refused them even with the reserve freed: these rows stay
                # pending (their images, if written, are adopted by the next run).
                result.unrecorded += len(rows)
                continue
            services.inflight.recorded(attempts)
            for row in rows:
                result.by_status[row.status] += 1
                result.by_reason[(row.status, row.reason)] += 1
                if row.tier == BATCH_TIER:  # answered by a batch job (the summary's split)
                    result.batch_rows += 1
                    result.batch_usd += row.cost_usd or 0.0
                log.debug(
                    "row.finished",
                    row_id=row.row_id,
                    status=row.status,
                    reason=row.reason,
                    attempts=row.attempts,
                    latency_ms=row.latency_ms,
                )
