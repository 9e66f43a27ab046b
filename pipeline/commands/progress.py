"""Views of a running pipeline: the ``status.json`` heartbeat and the console display.

Both read the run's counters on a timer; nothing here is on the request path. On a TTY the
console shows a live bar; without one (cron, nohup, CI) one summary line every few seconds.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from pipeline.commands.barline import bar_line
from pipeline.commands.figures import duration
from pipeline.core.clock import SYSTEM_CLOCK, Clock
from pipeline.core.types import Status
from pipeline.run.result import RunResult
from pipeline.store.storage import write_atomic

STATUS_FILE = "status.json"
FIRST_LINE_S = 3.0  # without a terminal, the first progress line comes this soon


def snapshot(result: RunResult, *, batch: bool = False) -> dict[str, Any]:
    """The figures of a run right now, as written to ``status.json`` (``batch``: with the
    batch figures of a --mode batch run)."""
    done = sum(result.by_status.values())
    total = max(result.to_do + result.changed, done)
    elapsed = result.duration_s
    per_min = done / elapsed * 60 if elapsed > 0 else 0.0
    remaining = total - done
    eta = remaining / (per_min / 60) if per_min > 0 else None
    spent = result.spent_usd
    projected = spent / done * total if done else spent
    return {
        "pid": os.getpid(),
        "state": "running" if result.finished is None else "finished",
        "halt": result.halt.value if result.halt else None,
        "updated_at": result.clock.now().isoformat(timespec="seconds"),
        "elapsed_s": round(elapsed, 1),
        "to_do": total,
        "done": done,
        "skipped": result.skipped,
        "counts": {s.value: result.by_status.get(s.value, 0) for s in Status},
        "in_flight": result.in_flight,
        "retrying": result.retrying,
        "requests": result.requests,
        "rows_per_min": round(per_min, 1),
        "eta_s": round(eta) if eta is not None else None,
        "spend_usd": round(spent, 4),
        "projected_usd": round(projected, 4),
        "job_spend_usd": round(result.job_spent_usd, 4),  # every run in DIR: what the cap counts
        "max_cost_usd": result.max_cost_usd,
    } | (batch_figures(result) if batch else {})


def batch_figures(result: RunResult) -> dict[str, Any]:
    """--mode batch: how rows went (batch jobs, or online by the fallback) and what each cost;
    jobs still running at Google once the run stopped (their rows are pending, not lost)."""
    return {
        "batch": {
            "rows": result.batch_rows,
            "usd": round(result.batch_usd, 4),
            "fallback_rows": result.fallback_rows,
            "fallback_usd": round(result.fallback_usd, 4),
            "submitted_jobs": list(result.submitted_jobs),
            "submitted_rows": result.submitted_rows,
            # Google's batchStats, summed over the live jobs, and each job's own
            "google": {
                key: sum(int(job[key]) for job in result.batch_jobs.values())
                for key in ("requests", "succeeded", "failed", "pending")
            },
            "jobs": {job_id: dict(job) for job_id, job in result.batch_jobs.items()},
        }
    }


def describe(status: dict[str, Any]) -> str:
    """One line for logs and non-TTY consoles."""
    counts = status["counts"]
    invalid = f", {counts['invalid']} invalid" if counts.get("invalid") else ""
    parts = [
        f"{status['done']}/{status['to_do']} rows",
        f"{counts['succeeded']} ok, {counts['refused']} refused, {counts['failed']} failed"
        + invalid,
        f"{status['in_flight']} in flight, {status['retrying']} retrying",
        f"{status['rows_per_min']:.0f}/min",
        f"ETA {duration(status['eta_s'])}",
    ]
    parts.append(f"${status['spend_usd']:.2f} (projected ${status['projected_usd']:.2f})")
    if status.get("batch", {}).get("jobs"):
        google, jobs = status["batch"]["google"], len(status["batch"]["jobs"])
        parts.append(
            f"{jobs} jobs at Google: {google['succeeded'] + google['failed']}"
            f"/{google['requests']} requests done there"
        )
    return " | ".join(parts)


class ProgressReporter:
    """Keeps status.json and the console current while a run is going."""

    def __init__(
        self,
        out_dir: Path,
        emit: Callable[[str], None],
        *,
        interactive: bool | None = None,
        line_every_s: float = 30.0,
        status_every_s: float = 5.0,
        clock: Clock = SYSTEM_CLOCK,
        batch: bool = False,
    ) -> None:
        self.path = out_dir / STATUS_FILE
        self.batch = batch  # --mode batch: status.json carries the batch figures
        self.emit = emit
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        self.line_every_s = line_every_s
        self.status_every_s = status_every_s
        self.clock = clock

    def write_status(self, result: RunResult) -> dict[str, Any]:
        """Rewrite status.json atomically; returns what it wrote."""
        status = snapshot(result, batch=self.batch)
        # On a full disk the heartbeat waits: the run (and its records) come first.
        with contextlib.suppress(OSError):
            write_atomic(self.path, json.dumps(status, indent=1).encode())
        return status

    async def run(self, result: RunResult) -> None:
        """Until cancelled: refresh the display and rewrite status.json periodically."""
        if self.interactive:
            await self._live(result)
        else:
            await self._lines(result)

    async def _lines(self, result: RunResult) -> None:
        # The first line comes within seconds (a person just started the run and watches the
        # log), then one every --progress-every.
        now = self.clock.monotonic()
        next_status, next_line = now, now + min(FIRST_LINE_S, self.line_every_s)
        while True:
            now = self.clock.monotonic()
            if now >= next_status:
                await anyio.to_thread.run_sync(self.write_status, result)
                next_status = now + self.status_every_s
            if now >= next_line:
                stamp = self.clock.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")
                status = snapshot(result, batch=self.batch)
                self.emit(f"{stamp} progress: {describe(status)}")
                next_line = now + self.line_every_s
            await self.clock.sleep(max(0.0, min(next_status, next_line) - self.clock.monotonic()))

    async def _live(self, result: RunResult) -> None:
        # rich only for the bar: a run without a terminal (cron, CI, a benchmark) never loads it
        from rich.console import Console
        from rich.live import Live
        from rich.text import Text

        console = Console(stderr=True)
        last_status = -math.inf
        # Live moves log lines written to stderr above the bar (logs.py writes to whatever
        # sys.stderr is at the time), so they never end up glued to it.
        with Live(console=console, transient=True, redirect_stderr=True) as live:
            while True:
                if self.clock.monotonic() - last_status >= self.status_every_s:
                    await anyio.to_thread.run_sync(self.write_status, result)
                    last_status = self.clock.monotonic()
                line = bar_line(snapshot(result), console.width, result.duration_s)
                live.update(Text(line, no_wrap=True, overflow="crop"))
                await self.clock.sleep(0.5)
