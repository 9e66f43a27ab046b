"""Batch-mode runs against the in-process emulator, on the virtual clock: every row ends
recorded (images on disk as the ledger says), each job created once, nothing billed twice, and
the ledger's cost is what the emulator billed at the batch price; under job faults too."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.commands.progress import snapshot
from pipeline.core.clock import VirtualClock
from pipeline.core.config import Fallback, RunConfig, RunMode
from pipeline.emulator import EmulatorApp
from pipeline.emulator.batchspecs import parse_batch_delay, parse_batch_faults
from pipeline.emulator.mixes import fault_mix_rows
from pipeline.run.control import Halt
from pipeline.run.result import RunResult
from pipeline.store.batchbook import BatchBook
from pipeline.store.bookjob import Phase
from pipeline.store.ledger import LEDGER_FILE, SCHEMA
from pipeline.store.ledgerview import read_ledger_view
from tests import helpers
from tests.helpers import run_config, write_csv


def rows(n: int, **extra: str) -> list[dict[str, str]]:
    return [{"id": f"r{i:03d}", "prompt": f"a teapot, angle {i}", **extra} for i in range(n)]


def emulator(
    clock: VirtualClock, faults: str = "", batch_faults: str = "", **kw: Any
) -> EmulatorApp:
    return helpers.emulator(
        faults,
        clock,
        seed=7,
        batch_delay=parse_batch_delay("uniform:120-1800"),
        batch_faults=parse_batch_faults(batch_faults),
        **kw,
    )


def batch_run(
    tmp_path: Path,
    clock: VirtualClock,
    data: list[dict[str, Any]],
    batch_faults: str = "",
    **options: Any,
) -> tuple[EmulatorApp, Path, RunConfig]:
    """An emulator with ``batch_faults``, the output folder, and a batch run of ``data``."""
    manifest = write_csv(tmp_path / "m.csv", data)
    out = tmp_path / "out"
    config = run_config(manifest, out, mode=RunMode.BATCH, clock=clock, **options)
    return emulator(clock, batch_faults=batch_faults), out, config


def ledger(out: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = pq.read_table(out / "ledger.parquet").to_pylist()
    return found


def assert_recorded_and_paid_once(out: Path, app: EmulatorApp, n: int) -> list[dict[str, Any]]:
    recorded = ledger(out)
    assert sorted(r["row_id"] for r in recorded) == [f"r{i:03d}" for i in range(n)]
    for r in recorded:
        if r["status"] == "succeeded":
            [path] = r["output_paths"]
            data = (out / path).read_bytes()
            assert hashlib.sha256(data).hexdigest() == r["sha256"][0]
    stats = app.stats_snapshot()
    assert stats["billed_duplicates"] == 0
    assert stats["billed"] == 0  # nothing went online
    billed = stats["by_tier"]["batch"]["billed_usd"]  # type: ignore[index]
    assert sum(r["cost_usd"] or 0 for r in recorded) == pytest.approx(billed, abs=1e-6)
    return recorded


async def test_a_batch_run_records_every_row_at_the_batch_price(
    tmp_path: Path, clock: VirtualClock
) -> None:
    app, out, config = batch_run(tmp_path, clock, rows(30), batch_max_requests=12)

    result: RunResult = await helpers.run(config, app)

    recorded = assert_recorded_and_paid_once(out, app, 30)
    assert result.halt is None
    assert {(r["status"], r["tier"]) for r in recorded} == {("succeeded", "batch")}
    assert {r["batch_job"] for r in recorded} == {j.batch_name for j in BatchBook.load(out)}
    assert app.stats_snapshot()["batch_jobs_created"] == 3  # 12 + 12 + 6 rows
    jobs = BatchBook.load(out)
    assert [j.phase for j in jobs] == [Phase.CLEANED] * 3
    assert sorted((out / ".batch").iterdir()) == [out / ".batch" / "book.jsonl"]


async def test_rows_with_a_tier_go_into_a_batch_without_one_and_keep_it_for_the_fallback(
    tmp_path: Path, clock: VirtualClock
) -> None:
    # A batch job is its own tier: a serviceTier inside its requests is an error line (the
    # emulator is strict), so a row's flex or priority must not reach the request file.
    data = [{**row, "tier": "flex" if i % 2 else "priority"} for i, row in enumerate(rows(6))]
    app, out, config = batch_run(tmp_path, clock, data)

    await helpers.run(config, app)

    recorded = assert_recorded_and_paid_once(out, app, 6)
    assert {(r["status"], r["tier"]) for r in recorded} == {("succeeded", "batch")}
    assert app.stats_snapshot()["batch_jobs_created"] == 1


def mixed_rows(n: int, photo: Path) -> list[dict[str, Any]]:
    """The emulator's fault mix, and one row that always fails (after the last round)."""
    found: list[dict[str, Any]] = list(fault_mix_rows(n, photo))
    found.append({"id": f"r{n:03d}", "prompt": "always failing #503", "images": ""})
    return found


async def test_a_fault_mix_ends_every_row_terminal_paid_once(
    tmp_path: Path, clock: VirtualClock
) -> None:
    photo = helpers.make_image(tmp_path / "photo.png")
    faults = "expire=0.1,fail=0.1,late_file=0.3,long_id=0.3,line_error=0.05"
    app, out, config = batch_run(
        tmp_path, clock, mixed_rows(199, photo), faults, batch_max_requests=25
    )

    result = await helpers.run(config, app)

    recorded = assert_recorded_and_paid_once(out, app, 200)
    assert result.halt is None
    by_id = {r["row_id"]: r for r in recorded}
    # A row whose jobs failed or expired MAX_ROUNDS times fails with its job's state.
    job_failed = {i for i, r in by_id.items() if r["reason"] in ("BATCH_EXPIRED", "BATCH_FAILED")}
    kinds = {i % 10: set() for i in range(10)}  # type: dict[int, set[str]]
    for i in range(199):
        if f"r{i:03d}" not in job_failed:
            kinds[i % 10].add(by_id[f"r{i:03d}"]["status"])
    assert kinds[1] == kinds[2] == {"refused"}
    assert kinds[4] == kinds[0] == {"succeeded"}  # edits and plain rows
    assert kinds[3] == {"succeeded"}  # an error line once: finished on resubmission
    assert any(by_id[f"r{i:03d}"]["attempts"] >= 2 for i in range(3, 199, 10))
    assert (by_id["r199"]["status"], by_id["r199"]["attempts"]) == ("failed", 3)
    assert len(job_failed) < 20
    stats = app.stats_snapshot()
    jobs = BatchBook.load(out)
    assert stats["batch_jobs_created"] == len(jobs)  # every job of the book created once
    assert any(j.state in ("EXPIRED", "FAILED") for j in jobs)  # the faults did happen
    assert all(j.cleaned for j in jobs)
    assert {r["tier"] for r in recorded if r["status"] != "invalid"} == {"batch"}


async def test_a_rerun_after_a_drain_adopts_the_live_jobs_and_creates_none(
    tmp_path: Path, clock: VirtualClock
) -> None:
    app, out, config = batch_run(tmp_path, clock, rows(20), batch_max_requests=8)
    stop_at = clock.now() + timedelta(seconds=60)  # the jobs take 2 to 30 minutes

    first = await helpers.run(replace(config, stop_at=stop_at), app)

    assert first.halt is Halt.DEADLINE
    assert not (out / "ledger.parquet").exists() or ledger(out) == []
    created = app.stats_snapshot()["batch_jobs_created"]
    assert created == 3
    assert [j.phase for j in BatchBook.load(out)] == [Phase.CREATED] * 3  # left running
    # Google's batchStats of the live jobs reach status.json (the SDK drops them)
    google = snapshot(first, batch=True)["batch"]
    assert len(google["jobs"]) == 3
    assert google["google"]["requests"] == 20
    assert {job["state"] for job in google["jobs"].values()} <= {"PENDING", "RUNNING"}

    second = await helpers.run(config, app)

    assert second.halt is None
    assert app.stats_snapshot()["batch_jobs_created"] == created  # adopted, none created
    assert_recorded_and_paid_once(out, app, 20)


async def test_a_rerun_of_a_few_ids_still_records_every_row_its_adopted_jobs_paid_for(
    tmp_path: Path, clock: VirtualClock
) -> None:
    # The live jobs hold 20 rows; a rerun with --limit 2 plans only two of them. Dropping
    # the other 18 results would lose paid images (and send, and pay for, them again later).
    app, out, config = batch_run(tmp_path, clock, rows(20), batch_max_requests=8)
    stop_at = clock.now() + timedelta(seconds=60)
    await helpers.run(replace(config, stop_at=stop_at), app)
    created = app.stats_snapshot()["batch_jobs_created"]

    await helpers.run(replace(config, limit=2), app)

    assert_recorded_and_paid_once(out, app, 20)
    await helpers.run(config, app)  # nothing left to do: nothing sent, nothing created
    assert app.stats_snapshot()["batch_jobs_created"] == created
    assert_recorded_and_paid_once(out, app, 20)


async def test_a_stuck_job_at_the_deadline_is_cancelled_and_its_rows_go_online(
    tmp_path: Path, clock: VirtualClock
) -> None:
    deadline = clock.now() + timedelta(hours=3)
    app, out, config = batch_run(tmp_path, clock, rows(10), "stuck=1", deadline=deadline)

    result = await helpers.run(config, app)

    assert result.halt is None
    recorded = ledger(out)
    assert {(r["status"], r["tier"]) for r in recorded} == {("succeeded", "standard")}
    assert max(r["finished_at"] for r in recorded) < deadline
    stats = app.stats_snapshot()
    assert (stats["batch_billed"], stats["billed"], stats["billed_duplicates"]) == (0, 10, 0)
    [job] = BatchBook.load(out)
    assert (job.state, job.cancel_requested) == ("CANCELLED", True)


def test_a_ledger_written_before_the_batch_job_column_reads_it_as_null(tmp_path: Path) -> None:
    old = [f for f in SCHEMA if f.name != "batch_job"]
    row = {"row_id": "a", "line": 2, "status": "succeeded", "reason": "STOP", "model": "m",
           "prompt": "a lamp", "cost_usd": 0.067, "tier": "standard"}  # fmt: skip
    pq.write_table(pa.Table.from_pylist([row], schema=pa.schema(old)), tmp_path / LEDGER_FILE)

    view = read_ledger_view(tmp_path, ["row_id", "tier", "batch_job"])

    assert view.table.to_pylist() == [{"row_id": "a", "tier": "standard", "batch_job": None}]


async def test_with_fallback_online_a_failed_jobs_rows_are_sent_online_once(
    tmp_path: Path, clock: VirtualClock
) -> None:
    app, out, config = batch_run(tmp_path, clock, rows(10), "fail=1", fallback=Fallback.ONLINE)

    result = await helpers.run(config, app)

    assert result.halt is None
    recorded = ledger(out)
    assert {(r["status"], r["tier"]) for r in recorded} == {("succeeded", "standard")}
    stats = app.stats_snapshot()
    assert (stats["batch_jobs_created"], stats["batch_billed"], stats["billed"]) == (1, 0, 10)
    assert stats["billed_duplicates"] == 0
    assert sum(r["cost_usd"] for r in recorded) == pytest.approx(stats["billed_usd"], abs=1e-6)
