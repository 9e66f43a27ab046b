"""Views of a running pipeline: the ``status.json`` heartbeat and the console display.

Both read the run's counters on a timer; nothing here is on the request path. On a TTY the
console shows a live bar; without one (cron, nohup, CI) one summary line every few seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.result import RunResult
from pipeline.storage import write_atomic
from pipeline.types import Status

STATUS_FILE = "status.json"


def snapshot(result: RunResult) -> dict[str, Any]:
    """The figures of a run right now, as written to ``status.json``."""
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
        "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
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
    }


def describe(status: dict[str, Any]) -> str:
    """One line for logs and non-TTY consoles."""
    counts = status["counts"]
    eta = status["eta_s"]
    parts = [
        f"{status['done']}/{status['to_do']} rows",
        f"{counts['succeeded']} ok, {counts['refused']} refused, {counts['failed']} failed",
        f"{status['in_flight']} in flight, {status['retrying']} retrying",
        f"{status['rows_per_min']:.0f}/min",
        f"ETA {_duration(eta)}" if eta is not None else "ETA -",
    ]
    parts.append(f"${status['spend_usd']:.2f} (projected ${status['projected_usd']:.2f})")
    return " | ".join(parts)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


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
    ) -> None:
        self.path = out_dir / STATUS_FILE
        self.emit = emit
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        self.line_every_s = line_every_s
        self.status_every_s = status_every_s

    def write_status(self, result: RunResult) -> dict[str, Any]:
        """Rewrite status.json atomically; returns what it wrote."""
        status = snapshot(result)
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
        last_line = time.monotonic()
        while True:
            status = await anyio.to_thread.run_sync(self.write_status, result)
            if time.monotonic() - last_line >= self.line_every_s:
                self.emit(f"progress: {describe(status)}")
                last_line = time.monotonic()
            await anyio.sleep(self.status_every_s)

    async def _live(self, result: RunResult) -> None:
        console = Console(stderr=True)
        columns = (
            TextColumn("[bold]nanobatch"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
        )
        last_status = 0.0
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("", total=None)
            while True:
                status = snapshot(result)
                if time.monotonic() - last_status >= self.status_every_s:
                    await anyio.to_thread.run_sync(self.write_status, result)
                    last_status = time.monotonic()
                bar.update(
                    task,
                    total=status["to_do"] or None,
                    completed=status["done"],
                    description=describe(status).split(" | ", 1)[1],
                )
                await anyio.sleep(0.5)
