"""The run shell with an executor that is not the online one: the seam a batch executor uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio.lowlevel
import pyarrow.parquet as pq

from pipeline.core.types import Outcome, OutcomeKind, Status
from pipeline.run.control import Halt
from pipeline.run.executor import Executor, Jobs, Records, RunServices
from pipeline.run.result import RunResult
from pipeline.run.shell import RunShell
from pipeline.store.ledger import Ledger
from pipeline.store.records import RowState, ledger_record
from tests.helpers import run_config, write_csv

HELD = Outcome(OutcomeKind.ROW_ERROR, "HELD_IN_A_JOB", message="recorded by a fake executor")


class Collecting:
    """Like a batch executor: takes every job first, sends nothing, then records them all."""

    def __init__(self, verdict: Outcome | None = None, drain_after: int | None = None) -> None:
        self.verdict = verdict
        self.drain_after = drain_after  # drain the run after this many jobs
        self.held: list[str] = []

    async def execute(self, services: RunServices, jobs: Jobs, records: Records) -> None:
        async with jobs, records:
            collected = []
            async for job in jobs:
                collected.append(job)
                if len(collected) == self.drain_after:
                    # Busy elsewhere (a batch polling its job) while the producer waits to
                    # hand over more; then the run drains and this returns unread jobs.
                    # Checkpoints, not time: the producer blocks within a few of them.
                    while jobs.statistics().tasks_waiting_send == 0:
                        await anyio.lowlevel.checkpoint()
                    services.control.drain(Halt.DEADLINE)
                    break
            self.held = [job.row_id for job in collected]
            for job in collected:
                row = RowState(job, job.image_size or "1K")
                row.attempts = 1
                now = services.clock.now()
                await records.send(row.attempt_record(HELD, 0.0, 0.0, 0.0, now))
                record = ledger_record(
                    row, fingerprint="held", outcome=HELD, status=Status.FAILED,
                    latency_ms=0.0, stored=[], finished_at=now,
                )  # fmt: skip
                await records.send(record)

    def stopped(self) -> Outcome | None:
        return self.verdict


async def run_shell(tmp_path: Path, rows: list[dict[str, Any]], executor: Executor) -> RunResult:
    config = run_config(write_csv(tmp_path / "m.csv", rows), tmp_path / "out", concurrency=2)
    ledger = Ledger(config.out_dir)
    ledger.open()
    try:
        return await RunShell(config, ledger).run(executor)
    finally:
        ledger.close()


def recorded(out: Path, name: str = "ledger.parquet") -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pq.read_table(out / name).to_pylist()
    return rows


async def test_an_executor_that_holds_every_job_before_recording_is_fed_the_whole_plan(
    tmp_path: Path,
) -> None:
    # More rows than the bounded job stream holds: the producer waits, the executor drains it.
    rows = [{"id": f"r{i}", "prompt": f"photo {i}"} for i in range(20)]
    rows.append({"id": "blank", "prompt": "  "})
    executor = Collecting()

    result = await run_shell(tmp_path, rows, executor)

    assert executor.held == [f"r{i}" for i in range(20)]
    ledger = {r["row_id"]: r for r in recorded(tmp_path / "out")}
    assert {ledger[f"r{i}"]["reason"] for i in range(20)} == {"HELD_IN_A_JOB"}
    assert ledger["blank"]["status"] == "invalid"  # the producer's, not the executor's
    assert len(recorded(tmp_path / "out", "attempts.parquet")) == 20
    assert result.by_status == {"failed": 20, "invalid": 1}
    assert result.halt is None


async def test_an_executor_verdict_at_the_end_stops_the_run(tmp_path: Path) -> None:
    unusable = Outcome(OutcomeKind.MODEL_ERROR, "MODEL_NOT_FOUND", http_status=404)
    result = await run_shell(tmp_path, [{"id": "a", "prompt": "p"}], Collecting(unusable))

    assert result.halt is Halt.API
    assert result.stopped == unusable


async def test_a_drain_while_the_producer_waits_leaves_the_rows_not_taken_pending(
    tmp_path: Path,
) -> None:
    rows = [{"id": f"r{i}", "prompt": f"photo {i}"} for i in range(40)]
    executor = Collecting(drain_after=3)

    result = await run_shell(tmp_path, rows, executor)

    assert result.halt is Halt.DEADLINE
    assert {r["row_id"] for r in recorded(tmp_path / "out")} == {"r0", "r1", "r2"}
