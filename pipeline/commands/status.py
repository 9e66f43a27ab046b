"""``nanobatch status DIR``: the state of an output directory at a glance, read-only.

Whether a run is going comes from the directory's lock (an ``flock`` that dies with its
process, so a killed run is never reported as running) and ``status.json`` (the heartbeat with
the run's live figures). The counts are the ledger as a run would see it, journal included
(``ledgerview``), so a run that is going or crashed before its first fold shows what it recorded.
Spend is every attempt's cost over all runs (``spend``), what ``--max-cost`` counts.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.commands.figures import duration
from pipeline.commands.progress import STATUS_FILE
from pipeline.core.errors import NanobatchError
from pipeline.core.types import Status
from pipeline.store.ledger import LOCK_FILE
from pipeline.store.ledgerview import has_ledger, read_ledger_view
from pipeline.store.spend import spent_in


@dataclass(frozen=True, slots=True)
class FolderStatus:
    """What ``nanobatch status`` reports; also its ``--format json``."""

    out_dir: str
    state: str  # running, finished, stopped (halt says why), crashed, or empty
    running: bool  # a live process holds the directory's lock
    pid: int | None  # of the run going (or of the last one, from status.json)
    halt: str | None  # why the last run stopped early, if it did
    updated_at: str | None  # status.json's heartbeat
    counts: dict[str, int] = field(default_factory=dict)  # rows by last status, journal included
    rows: int = 0
    unfolded_rows: int = 0  # rows only in the journal: a run is going or crashed
    spend_usd: float = 0.0  # every attempt over all runs
    progress: dict[str, Any] | None = None  # the running run's status.json figures
    rerun: dict[str, int] = field(default_factory=dict)  # what a rerun would do with known rows
    batch: dict[str, Any] | None = None  # status.json's "batch" figures of a --mode batch run

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def lock_holder(out_dir: Path) -> int | None:
    """The pid of the live run holding ``out_dir``'s lock, or None if no process holds it."""
    try:
        fd = os.open(out_dir / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None  # no lock file: no run ever opened this directory
    try:
        try:
            # A shared lock is refused only while a run holds its exclusive one; given at once.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 64).decode(errors="replace").strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def read_heartbeat(out_dir: Path) -> dict[str, Any] | None:
    """``status.json`` as the last run left it (None if absent or half-written)."""
    with contextlib.suppress(OSError, ValueError):
        data = json.loads((out_dir / STATUS_FILE).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else None
    return None


def folder_status(out_dir: Path) -> FolderStatus:
    """The directory's state now; raises UsageError for a damaged ledger."""
    holder = lock_holder(out_dir)
    beat = read_heartbeat(out_dir)
    found: Counter[str] = Counter()
    rows = unfolded = 0
    if has_ledger(out_dir):
        view = read_ledger_view(out_dir, ["row_id", "status"])
        rows, unfolded, found = view.table.num_rows, view.journal_records, view.by_status()
    counts = {s.value: found[s.value] for s in Status}
    if holder is not None:
        state = "running"
    elif (beat is not None and beat.get("state") == "running") or unfolded:
        state = "crashed"  # the heartbeat or journal of a run that did not end cleanly
    elif beat is not None and beat.get("halt"):
        state = "stopped"
    elif beat is not None or rows:
        state = "finished"
    else:
        state = "empty"
    pid = holder or (beat.get("pid") if beat else None)
    return FolderStatus(
        out_dir=str(out_dir),
        state=state,
        running=holder is not None,
        pid=pid if isinstance(pid, int) else None,
        halt=beat.get("halt") if beat else None,
        updated_at=beat.get("updated_at") if beat else None,
        counts=counts,
        rows=rows,
        unfolded_rows=unfolded,
        spend_usd=round(spent_in(out_dir), 4) if rows or beat else 0.0,
        progress=beat if holder is not None else None,
        rerun={
            "kept": counts["succeeded"] + counts["refused"],
            "retried_failed": counts["failed"],
            "revalidated_invalid": counts["invalid"],
            "refused_with_rerun_refused": counts["refused"],
        },
        batch=_batch_figures(beat),
    )


def _batch_figures(beat: dict[str, Any] | None) -> dict[str, Any] | None:
    """The heartbeat's batch figures (only a --mode batch run writes them)."""
    figures = beat.get("batch") if beat else None
    return figures if isinstance(figures, dict) else None


def live_note(out_dir: Path) -> str | None:
    """One line for ``verify`` and ``report`` when a run is going or crashed before its fold."""
    try:
        status = folder_status(out_dir)
    except NanobatchError:
        return None  # the command itself says what is wrong with the directory
    counts = ", ".join(f"{n} {s}" for s, n in status.counts.items() if n)
    if status.state == "running":
        return (
            f"a run is going in {status.out_dir} (pid {status.pid}): figures as of now, "
            f"its journal included ({counts or 'nothing recorded yet'})"
        )
    if status.state == "crashed":
        return (
            f"the last run in {status.out_dir} did not end cleanly: figures include its journal "
            f"({counts or 'nothing recorded'}); a rerun folds it and continues"
        )
    return None


def format_status(status: FolderStatus) -> str:
    """The report for people."""
    words = {
        "running": f"running (pid {status.pid})",
        "finished": "finished",
        "stopped": f"stopped early ({status.halt}); a rerun continues",
        "crashed": "not running; the last run did not end cleanly (a rerun recovers it)",
        "empty": "empty: no run has recorded anything here",
    }
    lines = [f"{status.out_dir}: {words[status.state]}"]
    if status.updated_at:
        lines.append(f"  heartbeat (status.json): {status.updated_at}")
    if status.progress is not None:
        p = status.progress
        cap = p.get("max_cost_usd")
        lines.append(
            f"  this run: {p.get('done', 0)}/{p.get('to_do', 0)} rows, "
            f"{p.get('in_flight', 0)} in flight, ETA {duration(p.get('eta_s'))}"
            + (f", cap ${cap:,.2f}" if isinstance(cap, (int, float)) else "")
        )
    counts = ", ".join(f"{n} {s}" for s, n in status.counts.items() if n) or "none"
    unfolded = f" ({status.unfolded_rows} from the journal)" if status.unfolded_rows else ""
    lines.append(f"  rows recorded: {status.rows}: {counts}{unfolded}")
    lines.append(f"  spend so far (every attempt, all runs): ${status.spend_usd:.2f}")
    r = status.rerun
    lines.append(
        f"  a rerun (default --rerun failed) keeps {r['kept']} done rows, retries "
        f"{r['retried_failed']} failed, validates {r['revalidated_invalid']} invalid again, "
        "and sends the manifest's rows not recorded yet"
    )
    if r["refused_with_rerun_refused"]:
        lines.append(
            f"  --rerun failed,refused would also send {r['refused_with_rerun_refused']} refused"
        )
    if status.batch is not None:
        lines.extend(format_batch(status.batch, status.out_dir, running=status.running))
    return "\n".join(lines)


def format_batch(batch: dict[str, Any], out_dir: str, *, running: bool) -> list[str]:
    """The batch figures of the running (or last) --mode batch run, a few lines."""

    def number(key: str, within: dict[str, Any] = batch) -> float:
        value = within.get(key)
        return value if isinstance(value, int | float) else 0

    lines = [
        f"  batch ({'this' if running else 'last'} run): {number('rows'):.0f} rows from jobs "
        f"(${number('usd'):.2f}), "
        f"{number('fallback_rows'):.0f} sent online by the fallback "
        f"(${number('fallback_usd'):.2f})"
    ]
    left = batch.get("submitted_jobs") or []
    if left:
        lines.append(
            f"  jobs left running at Google: {len(left)}, holding "
            f"{number('submitted_rows'):.0f} rows (pending: a rerun folds them; "
            f"`nanobatch batch status {out_dir}` asks Google now)"
        )
    jobs = batch.get("jobs") or {}
    if isinstance(jobs, dict) and jobs:
        google = batch.get("google") or {}
        states = ", ".join(
            f"{job_id} {job.get('state', '?')}"
            for job_id, job in jobs.items()
            if isinstance(job, dict)
        )
        lines.append(
            f"  at Google, as last polled: {states}; {number('succeeded', google):.0f} "
            f"succeeded, {number('failed', google):.0f} failed, "
            f"{number('pending', google):.0f} pending of {number('requests', google):.0f} requests"
        )
    return lines
