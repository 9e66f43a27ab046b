"""``nanobatch batch status`` and ``batch cancel`` on a folder whose book names jobs at the
in-process emulator: Google's state and counts beside the book's, a cancel journalled before
it is sent and carried out at Google, and the command line's refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.commands.batchjobs import (
    batch_cancel,
    batch_status,
    format_batch_status,
    format_cancelled,
)
from pipeline.emulator import parse_batch_faults
from pipeline.providers.gemini.batch.route import GeminiBatch
from pipeline.providers.http import HttpClient
from pipeline.store.batchbook import BatchBook
from pipeline.store.bookjob import Phase
from tests.batch_wire_helpers import batch_config, prepared, wire
from tests.emulator.emulator_helpers import FLASH_31

NOW = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)


async def book_with_jobs(out: Path, route: GeminiBatch, client: HttpClient) -> BatchBook:
    """j0001 created at the emulator (stuck in PENDING), j0002 folded, j0003 planned only."""
    book = BatchBook(out)
    book.open()
    rows = {"j0001": ["a", "b", "c"], "j0002": ["d"], "j0003": ["e", "f"]}
    for job_id, ids in rows.items():
        book.plan(model=FLASH_31, request_file=f".batch/{job_id}.jsonl", size=1000 * len(ids),
                  sha256="0" * 64, rows=ids, reserved_usd=0.1, job_id=job_id,
                  at=NOW - timedelta(hours=2))  # fmt: skip
    lines = [route.request_line(key, prepared(f"a lamp {key}")) for key in rows["j0001"]]
    name = book.display_name("j0001")
    book.record("j0001", Phase.CREATING, at=NOW - timedelta(hours=1))
    made = await route.create_job(client, model=FLASH_31, display_name=name, inline=lines)
    book.record("j0001", Phase.CREATED, batch_name=made.name, at=NOW - timedelta(hours=1))
    book.record("j0002", Phase.CREATED, batch_name="batches/old")
    book.record("j0002", Phase.ENDED, state="SUCCEEDED")
    book.record("j0002", Phase.FOLDED)
    book.close()
    return book


async def test_status_shows_googles_state_and_counts_beside_the_book(tmp_path: Path) -> None:
    stuck = batch_config(batch_faults=parse_batch_faults("stuck=1"))
    async with wire(stuck) as (route, client, _):
        await book_with_jobs(tmp_path, route, client)
        found = await batch_status(tmp_path, route, client, NOW)
    jobs = {job.job: job for job in found.jobs}
    assert found.asked_google
    assert (jobs["j0001"].state, jobs["j0001"].live, jobs["j0001"].rows) == ("PENDING", True, 3)
    assert jobs["j0001"].counts == {"requests": 3, "succeeded": 0, "failed": 0, "pending": 3}
    assert jobs["j0001"].age_s == 3600.0
    assert (jobs["j0002"].state, jobs["j0002"].live, jobs["j0002"].counts) == ("folded", False,
                                                                                None)  # fmt: skip
    assert (jobs["j0003"].state, jobs["j0003"].live) == ("not sent yet", True)
    report = found.to_json()
    assert (report["live_jobs"], report["live_rows"]) == (2, 5)
    assert "3 batch jobs, 2 live holding 5 rows" in format_batch_status(found)

    offline = await batch_status(tmp_path, None, None, NOW)
    assert not offline.asked_google
    assert {job.job: job.state for job in offline.jobs}["j0001"] == "submitted"


async def test_cancel_journals_then_cancels_every_live_job_at_google(tmp_path: Path) -> None:
    stuck = batch_config(batch_faults=parse_batch_faults("stuck=1"))
    async with wire(stuck) as (route, client, _):
        await book_with_jobs(tmp_path, route, client)
        done = await batch_cancel(tmp_path, route, client, NOW)
        after = await batch_status(tmp_path, route, client, NOW)
        again = await batch_cancel(tmp_path, route, client, NOW)  # a second: nothing new
    assert len(done.cancelled) == 1
    assert (done.rows, done.not_created, done.failed) == (3, ["j0003"], [])
    jobs = {job.job: job for job in after.jobs}
    assert jobs["j0001"].state == "CANCELLED"
    assert jobs["j0001"].cancel_requested
    assert jobs["j0003"].cancel_requested
    assert not jobs["j0002"].cancel_requested  # folded: not touched
    assert "next `nanobatch run`" in format_cancelled(done, tmp_path)
    assert again.cancelled == []


def test_the_commands_refuse_a_folder_that_is_not_there_and_cancel_needs_a_key(
    tmp_path: Path,
) -> None:
    runner = CliRunner()
    gone = runner.invoke(app, ["batch", "status", str(tmp_path / "nope")], env={})
    assert gone.exit_code == 2
    assert "does not exist" in gone.output
    keyless = runner.invoke(app, ["batch", "cancel", str(tmp_path)], env={})
    assert keyless.exit_code == 2
    assert "no API key" in keyless.output
    empty = runner.invoke(app, ["batch", "status", str(tmp_path), "--format", "json"], env={})
    assert empty.exit_code == 0
    assert json.loads(empty.output)["jobs"] == []
