"""Result downloads: streamed to disk, resumed with Range, by URL when the Files API rejects
the id, not ready yet for a late file, and a redirect to another host followed with no
credential at all (while API calls follow none)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.core.config import AuthStyle
from pipeline.core.types import OutcomeKind
from pipeline.emulator import parse_batch_delay, parse_batch_faults
from pipeline.providers.batchapi import BatchCallError, JobState, RemoteJob, ResultsNotReady
from pipeline.providers.gemini.batch.route import GeminiBatch
from pipeline.providers.http import HttpClient
from tests.batch_wire_helpers import KEY, batch_config, prepared, request_file, stats, wire
from tests.emulator.emulator_helpers import FLASH_31, FakeClock

CDN = "cdn.example"


def timed(clock: FakeClock, faults: str = "") -> Any:
    return batch_config(
        clock=clock, batch_delay=parse_batch_delay("100"), batch_faults=parse_batch_faults(faults)
    )


async def finished_job(
    batch: GeminiBatch, client: HttpClient, clock: FakeClock, tmp_path: Path, n: int = 4
) -> RemoteJob:
    """A file job of ``n`` requests, run to its end."""
    path = tmp_path / "requests.jsonl"
    request_file(batch, path, [f"a cat {i}" for i in range(n)], image_size="512")
    url = await batch.start_upload(client, size=path.stat().st_size, display_name="nb-t-j1")
    remote = await batch.send_upload(client, url, path)
    job = await batch.create_job(
        client, model=FLASH_31, display_name="nb-t-j1", file_name=remote.name
    )
    clock.advance(100)
    return await batch.get_job(client, job.name)


async def test_a_partial_download_resumes_with_range(tmp_path: Path) -> None:
    clock = FakeClock()
    async with wire(timed(clock)) as (batch, client, app):
        job = await finished_job(batch, client, clock, tmp_path)
        whole = tmp_path / "whole.jsonl"
        grown: list[int] = []
        size = await batch.download_results(client, job, whole, on_bytes=grown.append)
        before = stats(app)["download_bytes"]
        partial = tmp_path / "partial.jsonl"
        partial.write_bytes(whole.read_bytes()[: size // 3])
        assert await batch.download_results(client, job, partial) == size
        resumed = stats(app)["download_bytes"] - before
        assert await batch.download_results(client, job, partial) == size  # complete: no GET
        again = stats(app)["download_bytes"] - before
        spoiled = tmp_path / "spoiled.jsonl"
        spoiled.write_bytes(b"x" * (size + 10))  # not this file: fetched again whole
        assert await batch.download_results(client, job, spoiled) == size
    assert grown[-1] == size
    assert partial.read_bytes() == whole.read_bytes() == spoiled.read_bytes()
    assert resumed == again == size - size // 3


async def test_an_output_id_the_files_api_rejects_is_downloaded_by_url(tmp_path: Path) -> None:
    clock = FakeClock()
    async with wire(timed(clock, "long_id=1")) as (batch, client, _):
        job = await finished_job(batch, client, clock, tmp_path)
        assert job.output_file is not None
        with pytest.raises(BatchCallError) as rejected:
            await batch.get_file(client, job.output_file)
        dest = tmp_path / "results.jsonl"
        size = await batch.download_results(client, job, dest)
    assert rejected.value.outcome.http_status == 400
    assert size == dest.stat().st_size > 0
    keys = {batch.read_result_line(line).key for line in dest.read_bytes().splitlines()}
    assert keys == {f"row-{i}" for i in range(4)}


async def test_a_late_file_is_not_ready_then_downloads(tmp_path: Path) -> None:
    clock = FakeClock()
    async with wire(timed(clock, "late_file=1,late_file_s=30")) as (batch, client, _):
        job = await finished_job(batch, client, clock, tmp_path)
        dest = tmp_path / "results.jsonl"
        with pytest.raises(ResultsNotReady):
            await batch.download_results(client, job, dest)
        clock.advance(30)
        size = await batch.download_results(client, job, dest)
    assert job.state is JobState.SUCCEEDED
    assert size == dest.stat().st_size > 0


class OtherHost(httpx.AsyncBaseTransport):
    """Plays Google's download host: downloads (or, with ``api``, every batch call) at the
    emulator answer a redirect to ``cdn.example``, which serves the file with its own access
    and remembers what each request carried."""

    def __init__(self, inner: httpx.AsyncBaseTransport, *, api: bool = False) -> None:
        self.inner = inner
        self.api = api
        self.seen: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.url.host == CDN:
            self.seen.append(request)
            headers = {"x-goog-api-key": KEY}
            if "range" in request.headers:
                headers["range"] = request.headers["range"]
            original = request.url.params["path"]
            forward = httpx.Request("GET", f"http://emulator{original}?alt=media", headers=headers)
            return await self.inner.handle_async_request(forward)
        if path.endswith(":download") or (self.api and "/batches/" in path):
            target = f"http://{CDN}/blob?path={path}&sig=signed"
            return httpx.Response(302, headers={"location": target})
        return await self.inner.handle_async_request(request)


@pytest.mark.parametrize("style", [AuthStyle.HEADER, AuthStyle.QUERY, AuthStyle.BEARER])
async def test_a_download_redirected_to_another_host_carries_no_credential(
    tmp_path: Path, style: AuthStyle
) -> None:
    clock = FakeClock()
    hosts: list[OtherHost] = []

    def other(inner: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        hosts.append(OtherHost(inner))
        return hosts[-1]

    async with wire(timed(clock), style=style, transport=other) as (batch, client, _):
        job = await finished_job(batch, client, clock, tmp_path)
        dest = tmp_path / "results.jsonl"
        size = await batch.download_results(client, job, dest)
    assert size == dest.stat().st_size > 0
    (seen,) = hosts[0].seen
    assert "x-goog-api-key" not in seen.headers
    assert "authorization" not in seen.headers
    assert "key" not in seen.url.params
    assert KEY not in str(seen.url)


async def test_an_api_call_never_follows_a_redirect(tmp_path: Path) -> None:
    clock = FakeClock()
    hosts: list[OtherHost] = []

    def other(inner: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        hosts.append(OtherHost(inner, api=True))
        return hosts[-1]

    async with wire(timed(clock), transport=other) as (batch, client, _):
        line = batch.request_line("k", prepared("a"))
        job = await batch.create_job(client, model=FLASH_31, display_name="j", inline=[line])
        with pytest.raises(BatchCallError) as redirected:
            await batch.get_job(client, job.name)
    assert redirected.value.outcome.kind is OutcomeKind.RUN_ERROR
    assert redirected.value.outcome.reason == "REDIRECTED"
    assert hosts[0].seen == []


class NoRanges(httpx.AsyncBaseTransport):
    """A server (or proxy) that ignores ``Range``: always the whole file, with a 200."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if "range" in request.headers:
            del request.headers["range"]
        return await self.inner.handle_async_request(request)


async def test_a_server_that_ignores_range_gives_the_whole_file_again(tmp_path: Path) -> None:
    clock = FakeClock()
    async with wire(timed(clock), transport=NoRanges) as (batch, client, _):
        job = await finished_job(batch, client, clock, tmp_path)
        whole = tmp_path / "whole.jsonl"
        size = await batch.download_results(client, job, whole)
        partial = tmp_path / "partial.jsonl"
        partial.write_bytes(whole.read_bytes()[:100])
        assert await batch.download_results(client, job, partial) == size
    assert partial.read_bytes() == whole.read_bytes()
