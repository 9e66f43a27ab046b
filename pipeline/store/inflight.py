"""Requests in flight, noted on disk before they are sent, so that a killed run cannot hide
what they may have cost.

The job's spend (``spend.spent_in``, what ``--max-cost`` counts) is the attempt history. A run
killed with SIGKILL (an OOM kill, ``timeout -s KILL``, a power cut) records nothing for the
requests it had in flight, yet the server may finish and bill each of them; a restart loop
would then overspend the cap by up to ``--concurrency`` requests per kill. So each attempt is
noted here (row, attempt, worst-case cost) before its request is sent, and noted again once
its attempt record is written. A run that ends normally removes the file; after a crash,
``recover`` turns every attempt noted as sent but never as recorded into an attempt record
(``CRASHED``, possibly billed, at its worst case), so the job's spend counts it.

Lines are flushed, not fsynced: they must survive a killed process, which the page cache does.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from pipeline.core.budget import possibly_billed
from pipeline.core.types import Delivery, Outcome, OutcomeKind
from pipeline.store.journal import Journal, scan_journal
from pipeline.store.ledger import AttemptRecord

INFLIGHT_FILE = "inflight.journal"

# An attempt a killed run had in flight: sent, and nothing more is known.
CRASHED = Outcome(OutcomeKind.TRANSIENT, "CRASHED", delivery=Delivery.NO_ANSWER)


class InFlight:
    """The in-flight notes of one run (``DIR/inflight.journal``)."""

    def __init__(self, out_dir: Path) -> None:
        self._journal = Journal(out_dir / INFLIGHT_FILE, durable=False, sole=True)  # the run's
        self._outstanding = 0  # noted as sent, not yet as recorded

    def recover(self) -> list[AttemptRecord]:
        """The attempts a crashed run sent and never recorded, as attempt records."""
        sent: dict[tuple[str, int], dict[str, object]] = {}
        for note in scan_journal(self._journal.path):
            if not isinstance(note, dict):
                continue  # a damaged line: what it said is lost (its row's other notes stand)
            key = (str(note.get("row_id")), int(note.get("attempt") or 0))
            if note.get("recorded"):
                sent.pop(key, None)
            else:
                sent[key] = note
        return [_lost(row_id, attempt, note) for (row_id, attempt), note in sent.items()]

    def open(self) -> None:
        """Start this run's notes (the previous run's were recovered first)."""
        self._journal.clear()
        self._journal.open()

    def sent(self, row_id: str, attempt: int, started_at: datetime, cost_usd: float) -> None:
        """Note an attempt about to be sent, at the most it can cost. Raises ``OSError``."""
        note = {
            "row_id": row_id,
            "attempt": attempt,
            "started_at": started_at,
            "cost_usd": cost_usd,
        }
        self._journal.append([note])
        self._outstanding += 1

    def recorded(self, attempts: Sequence[AttemptRecord]) -> None:
        """Note attempts whose records are now in the attempt journal."""
        if not attempts:
            return
        try:
            self._journal.append(
                [{"row_id": a.row_id, "attempt": a.attempt, "recorded": True} for a in attempts]
            )
        except OSError:
            return  # still noted as sent: the next run counts them at their worst case
        self._outstanding -= len(attempts)

    def close(self) -> None:
        """Close the notes; remove them if every attempt was recorded (else the next run
        recovers the rest)."""
        self._journal.close(remove=self._outstanding <= 0)


def _lost(row_id: str, attempt: int, note: dict[str, object]) -> AttemptRecord:
    started = note.get("started_at")
    at = datetime.fromisoformat(started) if isinstance(started, str) else datetime.now(UTC)
    cost = note.get("cost_usd")
    return AttemptRecord(
        row_id=row_id,
        attempt=attempt,
        started_at=at,
        finished_at=at,
        latency_ms=0.0,
        http_status=None,
        outcome="cancelled",
        reason=CRASHED.reason,
        wait_s=0.0,
        possibly_billed=possibly_billed(CRASHED),
        cost_usd=float(cost) if isinstance(cost, int | float) else None,
    )
