"""The rows a run leaves alone: the ledger's finished rows that ``--rerun`` does not select.

Only their ids are read up front, a row group at a time; the fingerprints they were made with
are read when a done row must be checked against the manifest (an untrusted resume).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core.config import RunConfig
from pipeline.core.types import Status
from pipeline.store.ledger import Ledger

# Statuses a rerun may leave alone; --rerun picks which of them are sent again. Invalid rows
# are always validated again: that is free, and the user may have fixed the file.
FINISHED = (Status.SUCCEEDED, Status.REFUSED, Status.FAILED)


@dataclass(slots=True)
class DoneRows:
    """Rows to leave alone; the fingerprints they were made with are read only if needed."""

    ids: pa.Array
    ledger: Ledger | None = None
    keep: tuple[str, ...] = ()
    redone: Redone | None = None
    _fingerprints: pa.Array | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def among(self, row_ids: list[str]) -> set[str]:
        """Which of ``row_ids`` are done (one vectorised look, whatever the ledger's size)."""
        if not row_ids or not len(self.ids):
            return set()
        found = pc.is_in(pa.array(row_ids, type=self.ids.type), value_set=self.ids)
        return {row_id for row_id, hit in zip(row_ids, found.to_pylist(), strict=True) if hit}

    @property
    def fingerprints(self) -> pa.Array:
        """Aligned with ``ids`` (the ledger is read the same way twice)."""
        if self._fingerprints is None:
            self._fingerprints = _done_column(self.ledger, self.keep, "fingerprint", self.redone)
        return self._fingerprints


@dataclass(frozen=True, slots=True)
class Redone:
    """Rows ``--rerun`` selects that are left alone all the same: they finished (as
    succeeded or refused) at or after ``since``, so a continued rerun already redid them."""

    statuses: tuple[str, ...]
    since: datetime


def done_rows(ledger: Ledger, rerun: frozenset[Status], before: datetime | None = None) -> DoneRows:
    """Rows whose last outcome is finished and not selected by ``--rerun``; with ``before``
    (``--rerun-before``), succeeded or refused rows finished since then are kept too."""
    keep = tuple(s.value for s in FINISHED if s not in rerun)
    paid = tuple(s.value for s in (Status.SUCCEEDED, Status.REFUSED) if s in rerun)
    redone = Redone(paid, before) if before is not None and paid else None
    return DoneRows(_done_column(ledger, keep, "row_id", redone), ledger, keep, redone)


def _done_column(
    ledger: Ledger | None, keep: tuple[str, ...], column: str, redone: Redone | None = None
) -> pa.Array:
    """One column of the done rows, read a row group at a time (a whole-file read of a
    million-row ledger needs several times its size in scratch memory)."""
    chunks = []
    if ledger is not None and (keep or redone):
        statuses = pa.array(keep, pa.string())
        wanted = ["status", column] + (["finished_at"] if redone else [])
        for batch in ledger.iter_batches(wanted):
            mask = pc.is_in(batch.column("status"), value_set=statuses)
            if redone is not None:
                recent = pc.and_(
                    pc.is_in(batch.column("status"), pa.array(redone.statuses, pa.string())),
                    pc.fill_null(
                        pc.greater_equal(batch.column("finished_at"), redone.since), False
                    ),
                )
                mask = pc.or_(mask, recent)
            chunks.append(batch.column(column).filter(mask))
    return pa.concat_arrays(chunks) if chunks else pa.array([], pa.string())


def nothing_done() -> DoneRows:
    """No row done: what validate and ``--strict`` check every row against."""
    return DoneRows(pa.array([], pa.string()))


def redone_since(config: RunConfig, started: datetime) -> datetime | None:
    """When rows redone by ``--rerun`` succeeded/refused began to be redone (this run's
    start, or the first run's that the command continues), so that the command to continue
    does not pay for them again; None when the run redoes no finished row that cost money."""
    if not config.rerun & {Status.SUCCEEDED, Status.REFUSED}:
        return None
    return config.rerun_before or started
