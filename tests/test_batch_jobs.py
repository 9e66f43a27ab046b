"""Batch jobs through the client: create from a file and inline, get until done, list every
page, cancel, delete; and Google's Operation JSON read into ``RemoteJob``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.core.types import OutcomeKind
from pipeline.emulator import parse_batch_delay, parse_batch_faults
from pipeline.providers.batchapi import BatchCallError, BatchCounts, JobState, RemoteJob
from pipeline.providers.gemini.batch.wire import job_state, read_file, read_job
from pipeline.providers.gemini.provider import GeminiProvider
from pipeline.providers.openai_chat.provider import CAPABILITIES as CHAT
from pipeline.providers.vertex.provider import CAPABILITIES as VERTEX
from tests.batch_wire_helpers import batch_config, prepared, request_file, wire
from tests.emulator.emulator_helpers import FLASH_31, FakeClock


def timed(clock: FakeClock, faults: str = "", **overrides: Any) -> Any:
    return batch_config(
        clock=clock,
        batch_delay=parse_batch_delay("100"),
        batch_faults=parse_batch_faults(faults),
        **overrides,
    )


def read_lines(batch: Any, path: Path) -> dict[str | None, Any]:
    read = [batch.read_result_line(line) for line in path.read_bytes().splitlines()]
    return {r.key: r.outcome for r in read}


async def test_a_job_from_a_file_runs_to_success_and_its_lines_read(tmp_path: Path) -> None:
    clock = FakeClock()
    async with wire(timed(clock)) as (batch, client, _):
        path = tmp_path / "requests.jsonl"
        keys = request_file(batch, path, ["a cat", "a dog", "a fox"], image_size="512")
        url = await batch.start_upload(client, size=path.stat().st_size, display_name="nb-t-j1")
        remote = await batch.send_upload(client, url, path)
        job = await batch.create_job(
            client, model=FLASH_31, display_name="nb-t-j1", file_name=remote.name
        )
        assert job.state is JobState.PENDING
        assert not job.state.terminal
        assert job.counts == BatchCounts(requests=3, pending=3)
        assert (job.display_name, job.model) == ("nb-t-j1", FLASH_31)
        assert job.created is not None
        clock.advance(60)
        running = await batch.get_job(client, job.name)
        clock.advance(40)
        done = await batch.get_job(client, job.name)
        dest = tmp_path / "results.jsonl"
        size = await batch.download_results(client, done, dest)
    assert running.state is JobState.RUNNING
    assert running.counts.requests == 3
    assert running.counts.succeeded + running.counts.pending == 3
    assert done.state is JobState.SUCCEEDED
    assert done.state.terminal
    assert done.counts == BatchCounts(requests=3, succeeded=3)
    assert done.output_file is not None
    assert not done.inline_output
    assert size == dest.stat().st_size > 0
    outcomes = read_lines(batch, dest)
    assert sorted(k for k in outcomes if k) == keys
    assert all(o.kind is OutcomeKind.SUCCESS and o.images for o in outcomes.values())


async def test_an_inline_job_is_created_and_its_results_written_as_lines(tmp_path: Path) -> None:
    clock = FakeClock()
    async with wire(timed(clock)) as (batch, client, _):
        lines = [batch.request_line(f"row-{i}", prepared(p)) for i, p in enumerate(["a", "b"])]
        job = await batch.create_job(client, model=FLASH_31, display_name="nb-t-j2", inline=lines)
        dest = tmp_path / "inline.jsonl"
        clock.advance(100)
        listed = [j for j in await batch.list_jobs(client) if j.name == job.name]
        size = await batch.download_results(client, listed[0], dest)
    assert size == dest.stat().st_size
    outcomes = read_lines(batch, dest)
    assert set(outcomes) == {"row-0", "row-1"}
    assert all(o.kind is OutcomeKind.SUCCESS for o in outcomes.values())


async def test_listing_follows_every_page() -> None:
    clock = FakeClock()
    async with wire(timed(clock), page_size=2) as (batch, client, _):
        names = set()
        for i in range(5):
            line = batch.request_line("k", prepared(f"a cat {i}"))
            job = await batch.create_job(
                client, model=FLASH_31, display_name=f"j{i}", inline=[line]
            )
            names.add(job.name)
        listed = await batch.list_jobs(client)
    assert {j.name for j in listed} == names
    assert {j.display_name for j in listed} == {f"j{i}" for i in range(5)}


async def test_a_stuck_job_is_cancelled_and_then_deleted(tmp_path: Path) -> None:
    clock = FakeClock()
    async with wire(timed(clock, "stuck=1")) as (batch, client, _):
        line = batch.request_line("k", prepared("a cat"))
        job = await batch.create_job(client, model=FLASH_31, display_name="j", inline=[line])
        clock.advance(10 * 86400)
        assert (await batch.get_job(client, job.name)).state is JobState.PENDING
        await batch.cancel_job(client, job.name)
        cancelled = await batch.get_job(client, job.name)
        size = await batch.download_results(client, cancelled, tmp_path / "none.jsonl")
        await batch.delete_job(client, job.name)
        await batch.delete_job(client, job.name)  # gone already: fine
        with pytest.raises(BatchCallError) as missing:
            await batch.get_job(client, job.name)
    assert cancelled.state is JobState.CANCELLED
    assert cancelled.error is not None
    assert size == 0
    assert missing.value.outcome.reason == "NOT_FOUND"
    assert missing.value.outcome.kind is OutcomeKind.ROW_ERROR


async def test_files_are_listed_on_every_page_and_deleted(tmp_path: Path) -> None:
    async with wire(page_size=2) as (batch, client, _):
        path = tmp_path / "requests.jsonl"
        request_file(batch, path, ["a cat"])
        for i in range(3):
            url = await batch.start_upload(client, size=path.stat().st_size, display_name=f"f{i}")
            await batch.send_upload(client, url, path)
        listed = await batch.list_files(client)
        await batch.delete_file(client, listed[0].name)
        await batch.delete_file(client, listed[0].name)  # gone already: fine
        left = await batch.list_files(client)
        missing = await batch.get_file(client, listed[0].name)
    assert sorted(f.display_name for f in listed) == ["f0", "f1", "f2"]
    assert len(left) == 2
    assert missing is None


async def test_an_unknown_model_at_create_is_a_model_error() -> None:
    async with wire() as (batch, client, _):
        line = batch.request_line("k", prepared("a cat"))
        with pytest.raises(BatchCallError) as error:
            await batch.create_job(client, model="no-such-model", display_name="j", inline=[line])
    assert error.value.outcome.kind is OutcomeKind.MODEL_ERROR


@pytest.mark.parametrize(
    ("wire_state", "state"),
    [
        ("BATCH_STATE_PENDING", JobState.PENDING),
        ("BATCH_STATE_RUNNING", JobState.RUNNING),
        ("BATCH_STATE_SUCCEEDED", JobState.SUCCEEDED),
        ("JOB_STATE_FAILED", JobState.FAILED),
        ("BATCH_STATE_CANCELLED", JobState.CANCELLED),
        ("batch_state_expired", JobState.EXPIRED),
        ("BATCH_STATE_UNSPECIFIED", JobState.UNKNOWN),
        ("BATCH_STATE_PAUSED", JobState.UNKNOWN),
        (None, JobState.UNKNOWN),
        (7, JobState.UNKNOWN),
    ],
)
def test_states_are_read_without_prefix_and_unknown_ones_are_unknown(
    wire_state: object, state: JobState
) -> None:
    assert job_state(wire_state) is state
    assert state.terminal == (state in {"SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED"})


def test_an_operation_reads_with_string_counts_and_zeros_left_out() -> None:
    operation = {
        "name": "batches/abc",
        "metadata": {
            "model": "models/m",
            "displayName": "nb-x-j1",
            "state": "BATCH_STATE_PAUSED",
            "batchStats": {"requestCount": "9", "successfulRequestCount": "4"},
            "createTime": "2026-12-01T00:00:00Z",
        },
        "done": True,
        "response": {"responsesFile": "files/batch-abc"},
        "error": {"code": 13, "message": "boom"},
    }
    assert read_job(operation) == RemoteJob(
        name="batches/abc",
        display_name="nb-x-j1",
        model="m",
        state=JobState.UNKNOWN,
        wire_state="BATCH_STATE_PAUSED",
        counts=BatchCounts(requests=9, succeeded=4),
        output_file="files/batch-abc",
        inline_output=False,
        error="code 13: boom",
        created="2026-12-01T00:00:00Z",
    )


@pytest.mark.parametrize(
    "document", [None, [], "x", {}, {"name": 5}, {"name": "files/x"}, {"metadata": []}]
)
def test_what_is_not_a_job_or_a_file_reads_as_none(document: object) -> None:
    assert read_job(document) is None
    assert read_file(document if document != {"name": "files/x"} else {}) is None


def test_only_the_gemini_api_offers_batch() -> None:
    assert GeminiProvider().capabilities.batch
    assert not VERTEX.batch
    assert not CHAT.batch
