"""The one ledger writer of a run: records from the producer and the executor, made durable in
groups (one fsync for whatever is waiting), counted in the run's result once they are.

Every record of a run passes here, whichever executor made it, so the ledger has one writer
and the counters one place where a row becomes done.
"""

from __future__ import annotations

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from pipeline.core import logs
from pipeline.run.executor import Durable, Record, RunServices
from pipeline.store.ledger import AttemptRecord, Ledger, LedgerRecord

BATCH_TIER = "batch"  # the ledger's tier of a row a batch job answered (run.batch.fold)

# Group commits are paced: under load a group starts at most every PACE_S, gathering whatever
# arrives meanwhile. At 256 rows/s a commit (provenance, folders, ledger: three fsyncs and a
# thread's hand-off) ran for every ~3.5 rows; gathered for 25 ms, every ~8, and a 512 px
# row's CPU fell ~7% (median of nine pairs, docs/benchmarks.md). A record reaches the disk at
# most PACE_S later. A row with images loses nothing to a kill meanwhile (they are stored and
# their provenance line written: the next run adopts them); a refusal's record lost to a kill
# sends that row again, a window the commit's own few milliseconds already opened, now wider
# by up to PACE_S. A quiet run (real latencies: a few rows a second) commits each record at
# once, as before.
PACE_S = 0.025
# A group this large (a flood of invalid rows, a batch job's fold) is committed at once.
FULL_GROUP = 64


async def write(
    services: RunServices, ledger: Ledger, records: MemoryObjectReceiveStream[Record]
) -> None:
    """Append records to ``ledger`` until every sender closed its stream."""
    result, clock = services.result, services.clock
    last = -PACE_S  # when the last group's commit started, on the run's clock
    refused = False  # the disk refused a group: no later mark can vouch for what came before
    async with records:
        async for first in records:
            group = [first]
            # Whatever else is already waiting shares this fsync (group commit).
            ended = _gather(records, group)
            # Shielded: records taken from the stream exist nowhere else, so a group in hand
            # is committed however the run ends (the commit's thread could not be stopped
            # halfway anyway).
            with anyio.CancelScope(shield=True):
                wait = last + PACE_S - clock.monotonic()
                if wait > 0 and not ended and len(group) < FULL_GROUP and not _marked(group):
                    await clock.sleep(wait)
                    _gather(records, group)
                last = clock.monotonic()
                rows = [r for r in group if isinstance(r, LedgerRecord)]
                attempts = [r for r in group if isinstance(r, AttemptRecord)]
                written = not (rows or attempts) or await services.disk.append(
                    ledger, rows, attempts
                )
            refused = refused or not written
            for mark in group:
                if isinstance(mark, Durable):  # every record sent before it: here or earlier
                    mark.ok = not refused
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
                logs.debug(
                    "row.finished",
                    row_id=row.row_id,
                    status=row.status,
                    reason=row.reason,
                    attempts=row.attempts,
                    latency_ms=row.latency_ms,
                )


def _gather(records: MemoryObjectReceiveStream[Record], group: list[Record]) -> bool:
    """Append what is waiting in ``records`` to ``group``; True once the stream has ended."""
    while True:
        try:
            group.append(records.receive_nowait())
        except anyio.WouldBlock:
            return False
        except anyio.EndOfStream:
            return True


def _marked(group: list[Record]) -> bool:
    """Someone waits for this group to be durable (a ``Durable`` mark): no pacing."""
    return any(type(record) is Durable for record in group)
