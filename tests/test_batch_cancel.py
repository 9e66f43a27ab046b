"""``nanobatch batch cancel`` after a run died between creating a job and recording its name
(the book says ``creating``): the cancel finds the job at Google by its display name and
cancels it; a job the create never reached is never created afterwards, and its rows are sent
afresh by the next run. Never a cancelled job and a new one billing the same rows."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from pipeline.commands.batchjobs import batch_cancel
from pipeline.core.clock import VirtualClock
from pipeline.core.config import RunConfig, RunMode
from pipeline.emulator import EmulatorApp, EmulatorConfig, EmulatorTransport, parse_batch_delay
from pipeline.run.control import Halt
from pipeline.run.scheduler import run_manifest
from pipeline.store.batchbook import BatchBook, request_cancel
from pipeline.store.bookjob import BookJob, Phase
from tests.batch_wire_helpers import batch_config, wire
from tests.helpers import run, run_config, write_csv

ROWS = 3


class CreateCutOff(httpx.AsyncBaseTransport):
    """The emulator, except that every job create is cut off: ``reached`` says whether it
    reached Google first (its answer lost) or not (the connection refused)."""

    def __init__(self, app: EmulatorApp, *, reached: bool) -> None:
        self.inner = EmulatorTransport(app)
        self.reached = reached

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith(":batchGenerateContent"):
            if not self.reached:
                raise httpx.ConnectError("connection refused", request=request)
            await self.inner.handle_async_request(request)
            raise httpx.ReadError("connection reset", request=request)
        return await self.inner.handle_async_request(request)


def setup(tmp_path: Path, clock: VirtualClock) -> tuple[RunConfig, EmulatorConfig]:
    """A batch run of ``ROWS`` rows on ``clock``, and an emulator whose jobs take 60-90 s."""
    manifest = write_csv(tmp_path / "m.csv", [{"id": f"r{i}", "prompt": f"a bowl {i}"}
                                              for i in range(ROWS)])  # fmt: skip
    config = run_config(manifest, tmp_path / "out", mode=RunMode.BATCH, clock=clock)
    emulated = batch_config(clock=clock.monotonic, batch_delay=parse_batch_delay("uniform:60-90"))
    return config, emulated


async def died_while_creating(config: RunConfig, app: EmulatorApp, *, reached: bool) -> None:
    """A run that journals its job's create and is stopped before it learns the job's name."""
    stop_at = config.clock.now() + timedelta(seconds=2)  # within the first retry's wait
    stopped = await run_manifest(
        replace(config, stop_at=stop_at), CreateCutOff(app, reached=reached)
    )
    assert stopped.halt is Halt.DEADLINE
    [job] = BatchBook.load(config.out_dir)
    assert (job.phase, job.batch_name) == (Phase.CREATING, None)


async def created_and_running(config: RunConfig, app: EmulatorApp) -> BookJob:
    """A run stopped 2 s in: its one job created at Google and still running (60-90 s)."""
    stop_at = config.clock.now() + timedelta(seconds=2)
    await run_manifest(replace(config, stop_at=stop_at), EmulatorTransport(app))
    [job] = BatchBook.load(config.out_dir)
    assert job.batch_name is not None
    return job


def assert_rows_succeeded(out: Path) -> None:
    """Every row of the manifest is in the ledger, succeeded."""
    rows = pq.read_table(out / "ledger.parquet").to_pylist()
    assert sorted((r["row_id"], r["status"]) for r in rows) == [
        (f"r{i}", "succeeded") for i in range(ROWS)
    ]


@pytest.mark.parametrize("reached", [True, False], ids=["created", "never-created"])
async def test_cancel_while_a_create_is_unconfirmed_never_leaves_two_jobs_billing_a_row(
    tmp_path: Path, clock: VirtualClock, reached: bool
) -> None:
    config, emulated = setup(tmp_path, clock)
    out = config.out_dir
    async with wire(emulated) as (route, client, app):

        def stats() -> dict[str, Any]:
            found: dict[str, Any] = app.stats_snapshot()
            return found

        await died_while_creating(config, app, reached=reached)
        assert stats()["batch_jobs_created"] == (1 if reached else 0)
        [intent] = BatchBook.load(out)

        done = await batch_cancel(out, route, client, clock.now())

        if reached:  # found by its display name, and cancelled at Google
            assert (len(done.cancelled), done.rows, done.not_created) == (1, ROWS, [])
        else:
            assert (done.cancelled, done.not_created) == ([], [intent.job_id])

        await run(config, app)  # the next run
        book = {job.job_id: job for job in BatchBook.load(out)}
        cancelled = book[intent.job_id]
        if reached:  # adopted and folded (it finished nothing): its rows are pending
            assert (cancelled.state, cancelled.folded) == ("CANCELLED", True)
            assert not (out / "ledger.parquet").exists()
            await run(config, app)  # the run after sends them again, in a new job
        else:  # never created, now or later: its rows were sent afresh in a new job
            assert (cancelled.batch_name, cancelled.abandoned) == (None, "cancelled before it "
                                                                   "was created")  # fmt: skip
        final = stats()

    created = [job for job in BatchBook.load(out) if job.batch_name is not None]
    assert final["batch_jobs_created"] == len(created) == (2 if reached else 1)
    [fresh] = [job for job in created if job.job_id != intent.job_id]
    assert sorted(fresh.rows) == [f"r{i}" for i in range(ROWS)]
    rows = pq.read_table(out / "ledger.parquet").to_pylist()
    assert {(r["row_id"], r["status"], r["batch_job"]) for r in rows} == {
        (f"r{i}", "succeeded", fresh.batch_name) for i in range(ROWS)
    }
    assert (final["batch_billed"], final["billed"], final["billed_duplicates"]) == (ROWS, 0, 0)
    assert sum(r["cost_usd"] for r in rows) == pytest.approx(
        final["by_tier"]["batch"]["billed_usd"]
    )


async def test_a_job_found_created_after_its_cancel_was_asked_is_cancelled_by_the_run(
    tmp_path: Path, clock: VirtualClock
) -> None:
    # The cancel looked before the create reached Google (it found nothing to cancel); the
    # next run finds the job by its display name and cancels it, as was asked.
    config, emulated = setup(tmp_path, clock)
    out = config.out_dir
    async with wire(emulated) as (_, _, app):
        await died_while_creating(config, app, reached=True)
        [intent] = BatchBook.load(out)
        request_cancel(out, [intent.job_id])

        await run(config, app)
        stats: dict[str, Any] = app.stats_snapshot()

    [job] = BatchBook.load(out)
    assert (job.state, job.folded, job.cancel_requested) == ("CANCELLED", True, True)
    assert (stats["batch_jobs_created"], stats["batch_billed"]) == (1, 0)
    assert not (out / "ledger.parquet").exists()  # its rows pending, for the run after


class CancelRefused(httpx.AsyncBaseTransport):
    """The emulator, except that the first ``times`` cancels are answered 503 (Retry-After 7 s)
    without reaching it, or, with ``reached``, reach it and lose their answer."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, times: int, *, reached: bool, delay: str = "7"
    ) -> None:
        self.inner, self.times, self.reached, self.delay = inner, times, reached, delay

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith(":cancel") and self.times > 0:
            self.times -= 1
            if self.reached:
                await self.inner.handle_async_request(request)
            body = b'{"error": {"code": 503, "status": "UNAVAILABLE", "message": "busy"}}'
            return httpx.Response(503, headers={"retry-after": self.delay}, content=body)
        return await self.inner.handle_async_request(request)


@pytest.mark.parametrize(
    ("times", "reached", "delay"),
    [(2, False, "7"), (9, True, "7"), (1, False, "3600")],
    ids=["503s", "lost", "an-hour"],
)
async def test_a_cancel_refused_for_a_while_is_sent_again_until_the_job_is_cancelled(
    tmp_path: Path, clock: VirtualClock, times: int, reached: bool, delay: str
) -> None:
    """A job left running by a cancel that met a passing 503 goes on billing: the cancel is
    sent again at the server's delay; one whose answers were all lost is found cancelled."""
    config, emulated = setup(tmp_path, clock)
    out = config.out_dir
    refusing: list[CancelRefused] = []

    def refuse(inner: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        refusing.append(CancelRefused(inner, times, reached=reached, delay=delay))
        return refusing[0]

    async with wire(emulated, transport=refuse) as (route, client, app):
        job = await created_and_running(config, app)
        assert job.batch_name is not None
        waits: list[float] = []

        async def sleep(seconds: float) -> None:
            waits.append(seconds)

        done = await batch_cancel(out, route, client, clock.now(), sleep=sleep)
        remote = await route.get_job(client, job.batch_name)
    if delay == "3600":  # not waited out by someone watching: reported, left to the next run
        assert (remote.state.terminal, done.cancelled, waits) == (False, [], [])
        assert [f.split(" ")[0] for f in done.failed] == [job.job_id]
        return
    assert remote.state.value == "CANCELLED"
    assert done.failed == []
    if reached:  # every answer lost, five tries: the job was cancelled by the first
        assert (done.cancelled, len(waits)) == ([], 4)
    else:
        assert (done.cancelled, done.rows, waits) == ([job.batch_name], ROWS, [7.0, 10.0])


async def test_a_running_job_someone_asked_to_cancel_is_cancelled_by_the_next_run(
    tmp_path: Path, clock: VirtualClock
) -> None:
    """``batch cancel`` flagged the job in the book, but its cancel never got through: the next
    run finds the job running and sends the cancel, rather than wait for it to finish and bill."""
    config, emulated = setup(tmp_path, clock)
    out = config.out_dir
    async with wire(emulated) as (_, _, app):
        job = await created_and_running(config, app)
        request_cancel(out, [job.job_id])  # the flag, as batch cancel writes it first

        await run(config, app)
        stats: dict[str, Any] = app.stats_snapshot()

    [job] = BatchBook.load(out)
    assert (job.state, job.folded, job.cancel_requested) == ("CANCELLED", True, True)
    assert (stats["batch_jobs_created"], stats["batch_billed"], stats["billed"]) == (1, 0, 0)
    assert not (out / "ledger.parquet").exists()  # its rows pending, for the run after


class CancelAnswered(httpx.AsyncBaseTransport):
    """The emulator, except that every cancel is answered ``code`` with ``status``."""

    def __init__(self, app: EmulatorApp, code: int, status: str) -> None:
        self.inner = EmulatorTransport(app)
        self.code, self.status = code, status

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith(":cancel"):
            error = {"code": self.code, "status": self.status, "message": "not now"}
            return httpx.Response(self.code, json={"error": error})
        return await self.inner.handle_async_request(request)


@pytest.mark.parametrize(
    ("code", "status", "goes_on"),
    [
        (400, "FAILED_PRECONDITION", True),
        (400, "INVALID_ARGUMENT", True),
        (403, "PERMISSION_DENIED", False),
    ],
)
async def test_a_cancel_google_refuses_leaves_the_run_going(
    tmp_path: Path, clock: VirtualClock, code: int, status: str, goes_on: bool
) -> None:
    """A refused cancel (the job ended meanwhile) says nothing about the run: it goes on
    polling the job and folds what it finished (paid for), instead of stopping with the job's
    rows left hanging. A refused key still stops it."""
    config, emulated = setup(tmp_path, clock)
    out = config.out_dir
    async with wire(emulated) as (_, _, app):
        job = await created_and_running(config, app)
        request_cancel(out, [job.job_id])

        result = await run_manifest(config, CancelAnswered(app, code, status))
        stats: dict[str, Any] = app.stats_snapshot()

    if not goes_on:
        assert result.halt is Halt.API
        return
    assert result.halt is None
    [job] = BatchBook.load(out)
    assert (job.state, job.folded) == ("SUCCEEDED", True)
    assert_rows_succeeded(out)
    assert (stats["batch_billed"], stats["billed_duplicates"]) == (ROWS, 0)
