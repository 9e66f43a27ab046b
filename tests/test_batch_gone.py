"""What Google no longer has. A batch job deleted there (its console, another tool): the next run
hands its rows on as a failed job's, in a new job, instead of stopping on the same 404 every
time it is started; ``batch cancel`` finds nothing there to cancel. A request file gone before
its job was created (deleted, or past its 48 hours, as after a crash and a rerun days later):
uploaded again."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq

from pipeline.commands.batchjobs import batch_cancel
from pipeline.core.clock import VirtualClock
from pipeline.emulator import EmulatorApp, EmulatorTransport
from pipeline.run.control import Halt
from pipeline.run.scheduler import run_manifest
from pipeline.store.batchbook import BatchBook
from tests.batch_wire_helpers import wire
from tests.helpers import run
from tests.test_batch_cancel import (
    ROWS,
    assert_rows_succeeded,
    created_and_running,
    died_while_creating,
    setup,
)


async def test_a_job_deleted_at_google_hands_its_rows_on(
    tmp_path: Path, clock: VirtualClock
) -> None:
    config, emulated = setup(tmp_path, clock)  # a job whose rows take Google 60-90 s
    out = config.out_dir
    async with wire(emulated) as (route, client, app):
        gone = await created_and_running(config, app)
        assert gone.batch_name is not None
        await route.delete_job(client, gone.batch_name)  # someone else's clean-up
        cancelled = await batch_cancel(out, route, client, clock.now())
        assert (cancelled.not_created, cancelled.failed) == ([gone.job_id], [])  # nothing to do
        early = await run(config, app)  # a 404 this soon may be Google's delay: not trusted
        assert early.halt is Halt.API
        await clock.sleep(600)

        result = await run(config, app)
        assert result.halt is None
        assert not (out / "ledger.parquet").exists()  # cancelled: its rows wait for the next run
        result = await run(config, app)
        stats: dict[str, Any] = app.stats_snapshot()

    assert result.halt is None
    book = {job.job_id: job for job in BatchBook.load(out)}
    assert (book[gone.job_id].state, book[gone.job_id].folded) == ("NOT_FOUND", True)
    [fresh] = [job for job in book.values() if job.job_id != gone.job_id]
    assert sorted(fresh.rows) == [f"r{i}" for i in range(ROWS)]
    rows = pq.read_table(out / "ledger.parquet").to_pylist()
    assert {(r["row_id"], r["status"], r["batch_job"]) for r in rows} == {
        (f"r{i}", "succeeded", fresh.batch_name) for i in range(ROWS)
    }
    assert (stats["batch_jobs_created"], stats["batch_billed"], stats["billed"]) == (2, ROWS, 0)
    # How far the deleted job got is unknown: its rows count as possibly billed, at the most
    # they can have cost (here Google billed nothing: the spend errs on the side of the cap).
    attempts = pq.read_table(out / "attempts.parquet").to_pylist()
    unknown = [a for a in attempts if a["reason"] == "BATCH_NOT_FOUND"]
    assert sorted(a["row_id"] for a in unknown) == [f"r{i}" for i in range(ROWS)]
    assert all(a["possibly_billed"] and a["cost_usd"] > 0 for a in unknown)


async def test_a_request_file_gone_before_its_job_was_created_is_uploaded_again(
    tmp_path: Path, clock: VirtualClock
) -> None:
    config, emulated = setup(tmp_path, clock)
    out = config.out_dir
    async with wire(emulated) as (route, client, app):
        await died_while_creating(config, app, reached=False)  # uploaded, never created
        [job] = BatchBook.load(out)
        assert job.file_name is not None
        await route.delete_file(client, job.file_name)  # its 48 hours are over

        result = await run(config, app)
        stats: dict[str, Any] = app.stats_snapshot()

    assert result.halt is None
    [job] = BatchBook.load(out)
    assert (job.state, job.folded) == ("SUCCEEDED", True)
    assert_rows_succeeded(out)
    assert (stats["files_uploaded"], stats["batch_jobs_created"]) == (2, 1)
    assert (stats["batch_billed"], stats["billed_duplicates"]) == (ROWS, 0)


class CreateRefused(httpx.AsyncBaseTransport):
    """The emulator, except that every job create is refused as a bad request."""

    def __init__(self, app: EmulatorApp) -> None:
        self.inner = EmulatorTransport(app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith(":batchGenerateContent"):
            error = {"code": 400, "status": "INVALID_ARGUMENT", "message": "bad request"}
            return httpx.Response(400, json={"error": error})
        return await self.inner.handle_async_request(request)


async def test_a_create_refused_with_its_file_still_there_stops_the_run_as_before(
    tmp_path: Path, clock: VirtualClock
) -> None:
    config, emulated = setup(tmp_path, clock)
    async with wire(emulated) as (_, _, app):
        result = await run_manifest(config, CreateRefused(app))
        stats: dict[str, Any] = app.stats_snapshot()
    assert result.halt is Halt.API
    assert (stats["files_uploaded"], stats["batch_jobs_created"]) == (1, 0)


async def test_results_past_their_48_hours_hand_the_rows_on_instead_of_waiting_for_ever(
    tmp_path: Path, clock: VirtualClock
) -> None:
    """A run killed before it downloaded a finished job's results, rerun days later: the file
    is gone for good (a file not there yet is waited for; one past any file's lifetime is not),
    so its rows go into a new job. Google billed the first job too: that loss cannot be helped."""
    config, emulated = setup(tmp_path, clock)
    out = config.out_dir
    async with wire(emulated) as (route, client, app):
        first = await created_and_running(config, app)
        assert first.batch_name is not None
        await clock.sleep(120)  # it finishes while no run watches
        finished = await route.get_job(client, first.batch_name)
        assert finished.output_file is not None
        await app.batch.engine.outputs()  # written, then gone: its 48 hours are over
        await route.delete_file(client, finished.output_file)
        await clock.sleep(4 * 24 * 3600)  # the rerun, days later

        bounded = replace(config, stop_at=config.clock.now() + timedelta(days=1))
        result = await run(bounded, app)  # waiting for the file for ever would stop here
        stats: dict[str, Any] = app.stats_snapshot()

    assert result.halt is None
    book = {job.job_id: job for job in BatchBook.load(out)}
    assert (book[first.job_id].state, book[first.job_id].folded) == ("SUCCEEDED", True)
    [fresh] = [job for job in book.values() if job.job_id != first.job_id]
    rows = pq.read_table(out / "ledger.parquet").to_pylist()
    assert {(r["row_id"], r["status"], r["batch_job"]) for r in rows} == {
        (f"r{i}", "succeeded", fresh.batch_name) for i in range(ROWS)
    }
    assert (stats["batch_jobs_created"], stats["batch_billed"]) == (2, 2 * ROWS)
    # The lost answers were billed: each is in the attempt history at the most it can have
    # cost, so the spend (what --max-cost counts) is never less than the bill.
    attempts = pq.read_table(out / "attempts.parquet").to_pylist()
    lost = [a for a in attempts if a["reason"] == "RESULTS_EXPIRED"]
    assert sorted(a["row_id"] for a in lost) == [f"r{i}" for i in range(ROWS)]
    assert all(a["possibly_billed"] and a["cost_usd"] > 0 for a in lost)
    spent = sum(a["cost_usd"] or 0.0 for a in attempts)
    assert spent >= stats["by_tier"]["batch"]["billed_usd"] - 1e-9
