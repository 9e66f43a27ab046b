"""What a batch run tells its user, run as the command runs it (``run_and_report``) against the
in-process emulator on a virtual clock: a job stuck in PENDING still has every row done by
``--deadline`` through the online fallback; how many rows went through batch and how many
online, with their cost, in ``status.json``; a stopped batch run exits 4 with its jobs left
running at Google, shown as submitted, and the way to resume or cancel them."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipeline.commands.run import run_and_report
from pipeline.core.clock import VirtualClock
from pipeline.core.config import RunConfig, RunMode
from pipeline.emulator import EmulatorApp, EmulatorTransport
from pipeline.emulator.batchspecs import parse_batch_delay, parse_batch_faults
from pipeline.store.batchbook import BatchBook
from tests import helpers
from tests.helpers import run_config, write_csv


def emulator(clock: VirtualClock, batch_faults: str = "") -> EmulatorApp:
    return helpers.emulator("", clock, seed=7, batch_delay=parse_batch_delay("uniform:120-1800"),
                            batch_faults=parse_batch_faults(batch_faults))  # fmt: skip


def command(config: RunConfig, app: EmulatorApp) -> tuple[int, list[str], dict[str, Any]]:
    """``nanobatch run`` as the CLI runs it: the exit code, what it said, status.json."""
    said: list[str] = []
    argv = ["run", str(config.manifest), "--out", str(config.out_dir), "--mode", "batch"]
    code = run_and_report(config, EmulatorTransport(app), argv=argv, out=said.append,
                          err=said.append)  # fmt: skip
    status = json.loads((config.out_dir / "status.json").read_text())
    return code, said, status


def rows(n: int) -> list[dict[str, str]]:
    return [{"id": f"r{i:03d}", "prompt": f"a teapot, angle {i}"} for i in range(n)]


def test_a_stuck_job_still_finishes_every_row_by_the_deadline_online(tmp_path: Path) -> None:
    clock = VirtualClock()
    app = emulator(clock, batch_faults="stuck=1")
    deadline = clock.now() + timedelta(hours=3)
    config = run_config(write_csv(tmp_path / "m.csv", rows(10)), tmp_path / "out", clock=clock,
                        mode=RunMode.BATCH, deadline=deadline)  # fmt: skip

    code, said, status = command(config, app)

    assert code == 0
    recorded = pq.read_table(config.out_dir / "ledger.parquet").to_pylist()
    assert {(r["status"], r["tier"]) for r in recorded} == {("succeeded", "standard")}
    assert max(r["finished_at"] for r in recorded) < deadline
    # Sent online at deadline - margin (2 h), not before: the batch had its chance (the
    # ledger keeps milliseconds).
    assert min(r["finished_at"] for r in recorded) >= deadline - timedelta(hours=2, milliseconds=1)
    stats = app.stats_snapshot()
    assert (stats["batch_billed"], stats["billed"], stats["billed_duplicates"]) == (0, 10, 0)
    batch = status["batch"]
    assert (batch["rows"], batch["fallback_rows"], batch["submitted_jobs"]) == (0, 10, [])
    assert batch["fallback_usd"] == pytest.approx(stats["billed_usd"], abs=1e-6)
    assert any(f"10 sent online by the fallback (${batch['fallback_usd']:.2f})" in s for s in said)
    [job] = BatchBook.load(config.out_dir)
    assert (job.state, job.cancel_requested) == ("CANCELLED", True)


def test_a_batch_run_counts_its_rows_at_the_batch_price(tmp_path: Path) -> None:
    clock = VirtualClock()
    app = emulator(clock)
    config = run_config(write_csv(tmp_path / "m.csv", rows(12)), tmp_path / "out", clock=clock,
                        mode=RunMode.BATCH)  # fmt: skip

    code, _, status = command(config, app)

    assert code == 0
    billed = app.stats_snapshot()["by_tier"]["batch"]["billed_usd"]  # type: ignore[index]
    assert (status["batch"]["rows"], status["batch"]["fallback_rows"]) == (12, 0)
    assert status["batch"]["usd"] == pytest.approx(billed, abs=1e-6)


def test_a_stopped_batch_run_exits_4_and_leaves_its_jobs_running_as_submitted(
    tmp_path: Path,
) -> None:
    clock = VirtualClock()
    app = emulator(clock)
    stop_at = clock.now() + timedelta(seconds=60)  # the jobs take 2 to 30 minutes
    config = run_config(write_csv(tmp_path / "m.csv", rows(20)), tmp_path / "out", clock=clock,
                        mode=RunMode.BATCH, batch_max_requests=8, stop_at=stop_at)  # fmt: skip

    code, said, status = command(config, app)

    assert code == 4
    jobs = BatchBook.load(config.out_dir)
    assert sorted(status["batch"]["submitted_jobs"]) == sorted(str(j.batch_name) for j in jobs)
    assert (len(jobs), status["batch"]["submitted_rows"]) == (3, 20)
    assert app.stats_snapshot()["batch_jobs_created"] == 3  # none cancelled by the stop
    stop = next(line for line in said if line.startswith("nanobatch: stopped"))
    assert f"nanobatch batch cancel {config.out_dir}" in stop
    assert "To continue: nanobatch run" in stop
