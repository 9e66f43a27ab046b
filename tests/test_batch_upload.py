"""The resumable upload of request files: chunks, resumes at the acknowledged offset after a
lost answer, never a finished file twice, and no secret in any message."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from pipeline.core.types import OutcomeKind
from pipeline.emulator import parse_batch_faults
from pipeline.providers.batchapi import BatchCallError
from pipeline.providers.gemini.batch.upload import MAX_FAILURES
from tests.batch_wire_helpers import KEY, batch_config, request_file, stats, wire
from tests.emulator.emulator_helpers import RecordingSleep

CHUNK = 256 * 1024  # the protocol's granularity: a small file still takes several chunks


def long_prompts(n: int) -> list[str]:
    return [f"a red fox number {i} " + "in the snow " * 3000 for i in range(n)]


async def test_an_upload_goes_up_in_chunks_and_finalizes(tmp_path: Path) -> None:
    async with wire(chunk_bytes=CHUNK) as (batch, client, app):
        path = tmp_path / "requests.jsonl"
        request_file(batch, path, long_prompts(30))
        size = path.stat().st_size
        offsets: list[int] = []
        url = await batch.start_upload(client, size=size, display_name="nanobatch-t-j0001")
        remote = await batch.send_upload(client, url, path, on_offset=offsets.append)
        counters = stats(app)
    assert size > 3 * CHUNK
    assert remote.name.startswith("files/")
    assert remote.size_bytes == size
    assert remote.display_name == "nanobatch-t-j0001"
    assert offsets == sorted(offsets)
    assert offsets[0] == 0
    assert offsets[-1] == size
    assert counters["files_uploaded"] == 1
    assert counters["upload_bytes"] == size


async def test_lost_chunk_answers_resume_at_the_acknowledged_offset(tmp_path: Path) -> None:
    # Every chunk's answer is lost after the chunk is stored: each resume must ask the offset,
    # never resend what arrived. The last chunk's answer is lost too: a bare finalize follows.
    faults = batch_config(batch_faults=parse_batch_faults("upload_reset=1"))
    async with wire(faults, chunk_bytes=CHUNK) as (batch, client, app):
        path = tmp_path / "requests.jsonl"
        request_file(batch, path, long_prompts(30))
        size = path.stat().st_size
        url = await batch.start_upload(client, size=size, display_name="nanobatch-t-j0001")
        remote = await batch.send_upload(client, url, path)
        counters = stats(app)
    assert remote.size_bytes == size
    assert counters["faults"]["upload_reset"] >= 4
    assert counters["upload_bytes"] == size  # not one byte sent twice
    assert counters["files_uploaded"] == 1


async def test_an_interrupted_upload_resumes_without_resending(tmp_path: Path) -> None:
    async with wire(chunk_bytes=CHUNK) as (batch, client, app):
        path = tmp_path / "requests.jsonl"
        request_file(batch, path, long_prompts(30))
        size = path.stat().st_size
        url = await batch.start_upload(client, size=size, display_name="nanobatch-t-j0001")
        # A first run sent one chunk, then died.
        head = path.read_bytes()[:CHUNK]
        headers = {"x-goog-upload-command": "upload", "x-goog-upload-offset": "0"}
        answer = await client.fetch("POST", url, head, headers, 30.0)
        assert not isinstance(answer, tuple)
        assert answer.status == 200
        assert await batch.upload_offset(client, url) == CHUNK
        offsets: list[int] = []
        remote = await batch.send_upload(client, url, path, on_offset=offsets.append)
        counters = stats(app)
    assert offsets[0] == CHUNK
    assert remote.size_bytes == size
    assert counters["upload_bytes"] == size


async def test_a_finished_upload_is_found_not_sent_again(tmp_path: Path) -> None:
    async with wire(chunk_bytes=CHUNK) as (batch, client, app):
        path = tmp_path / "requests.jsonl"
        request_file(batch, path, long_prompts(10))
        size = path.stat().st_size
        name = "nanobatch-t-j0002"
        url = await batch.start_upload(client, size=size, display_name=name)
        first = await batch.send_upload(client, url, path)
        # The run crashed before journaling the file: the resumed send finds it.
        again = await batch.send_upload(client, url, path, display_name=name)
        with pytest.raises(BatchCallError) as unknown:
            await batch.send_upload(client, url, path)  # no name to find it by
        counters = stats(app)
    assert again == first
    assert counters["upload_bytes"] == size
    assert counters["files_uploaded"] == 1
    assert unknown.value.outcome.reason == "UPLOAD_FINAL_UNKNOWN_FILE"


async def test_a_session_that_is_gone_says_so_without_its_url(tmp_path: Path) -> None:
    async with wire() as (batch, client, _):
        path = tmp_path / "requests.jsonl"
        request_file(batch, path, ["a cat"])
        url = await batch.start_upload(client, size=path.stat().st_size, display_name="x")
        await client.fetch("POST", url, None, {"x-goog-upload-command": "cancel"}, 30.0)
        assert await batch.upload_offset(client, url) is None
        with pytest.raises(BatchCallError) as gone:
            await batch.send_upload(client, url, path)
    assert gone.value.outcome.reason == "UPLOAD_SESSION_GONE"
    assert gone.value.outcome.kind is OutcomeKind.ROW_ERROR
    assert "upload_id" not in str(gone.value)


async def test_a_rejected_key_stops_the_upload_and_is_not_in_the_message(tmp_path: Path) -> None:
    async with wire(batch_config(api_key="another-key-0123456789")) as (batch, client, _):
        with pytest.raises(BatchCallError) as rejected:
            await batch.start_upload(client, size=10, display_name="x")
    assert rejected.value.outcome.kind is OutcomeKind.RUN_ERROR
    assert rejected.value.outcome.reason == "API_KEY_INVALID"
    assert KEY not in str(rejected.value)
    assert KEY not in (rejected.value.outcome.message or "")


class DeadSessions(httpx.AsyncBaseTransport):
    """Every call on an upload session fails to connect; the rest reaches the emulator."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if "upload_id" in str(request.url):
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)


async def test_an_upload_that_cannot_progress_gives_up_after_growing_waits(tmp_path: Path) -> None:
    sleep = RecordingSleep()
    async with wire(transport=DeadSessions, sleep=sleep) as (batch, client, app):
        path = tmp_path / "requests.jsonl"
        request_file(batch, path, ["a cat"])
        url = await batch.start_upload(client, size=path.stat().st_size, display_name="x")
        with pytest.raises(BatchCallError) as failed:
            await batch.send_upload(client, url, path)
        counters = stats(app)
    assert failed.value.outcome.kind is OutcomeKind.TRANSIENT
    assert "upload_id" not in str(failed.value)
    assert sleep.calls == sorted(sleep.calls)
    assert len(sleep.calls) == MAX_FAILURES - 1  # the first resume is at once
    assert counters["upload_bytes"] == 0
