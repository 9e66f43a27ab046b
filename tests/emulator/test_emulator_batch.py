"""The Batch API: jobs that progress with the clock, their results, billing at the batch price."""

from __future__ import annotations

import json
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from pipeline.emulator import Payload, parse_batch_delay
from pipeline.emulator.exchange import Message
from tests.emulator.batch_helpers import (
    AUTH,
    create,
    download_lines,
    get,
    jsonl,
    state,
    upload,
)
from tests.emulator.emulator_helpers import (
    FLASH_31,
    KEY,
    FakeClock,
    body,
    config,
    emulator,
    generate,
)

PROMPTS = ["a red fox", "a blue whale #unsafe", "a green frog", "a moon #noimage"]


def delay(seconds: float, **overrides: Any) -> dict[str, Any]:
    return {"batch_delay": parse_batch_delay(str(seconds)), **overrides}


@pytest.mark.parametrize("version", ["v1beta", "v1"])
async def test_a_file_job_runs_in_time_and_its_lines_join_by_key(version: str) -> None:
    clock = FakeClock()
    async with emulator(config(clock=clock, **delay(100))) as (client, app):
        source = await upload(client, jsonl(PROMPTS, image_size="512"), version=version)
        created = await create(client, source["name"], version=version)
        assert created.status_code == 200, created.text
        job = created.json()
        name = job["name"]
        assert name.startswith("batches/")
        assert job["metadata"]["@type"].endswith("GenerateContentBatch")
        assert job["metadata"]["model"] == f"models/{FLASH_31}"
        assert job["metadata"]["inputConfig"] == {"fileName": source["name"]}
        assert state(job) == "BATCH_STATE_PENDING"
        # int64 counts are strings; zero counts are left out, as proto3 JSON does.
        assert job["metadata"]["batchStats"] == {"requestCount": "4", "pendingRequestCount": "4"}
        assert "done" not in job
        clock.advance(40)  # running since t=10; one request done every 22.5 s
        running = await get(client, name, version=version)
        assert state(running) == "BATCH_STATE_RUNNING"
        stats = running["metadata"]["batchStats"]
        assert stats["pendingRequestCount"] == "3"
        assert app.stats_snapshot()["batch_billed"] == 0  # billed when the job ends
        clock.advance(60)
        done = await get(client, name, version=version)
        assert state(done) == "BATCH_STATE_SUCCEEDED"
        assert done["done"] is True
        assert done["metadata"]["batchStats"] == {
            "requestCount": "4",
            "successfulRequestCount": "4",
        }
        output = done["metadata"]["output"]["responsesFile"]
        assert done["response"]["responsesFile"] == output
        raw = await client.get(f"/{version}/{output}:download?alt=media", headers=AUTH)
    lines = [json.loads(line) for line in raw.content.splitlines()]
    by_key = {line["key"]: line for line in lines}
    assert sorted(by_key) == ["row-0", "row-1", "row-2", "row-3"]
    assert by_key["row-1"]["response"]["candidates"][0]["finishReason"] == "IMAGE_SAFETY"
    text_parts = by_key["row-3"]["response"]["candidates"][0]["content"]["parts"]
    assert all("text" in part for part in text_parts)
    image = by_key["row-0"]["response"]["candidates"][0]["content"]["parts"][-1]
    assert image["inlineData"]["mimeType"] == "image/png"
    stats = app.stats_snapshot()
    assert stats["batch_jobs_created"] == 1
    assert stats["batch_requests"] == 4
    assert stats["batch_billed"] == 2  # the refused and the text-only answers are not billed
    assert stats["billed"] == 0
    assert stats["refused"] == 2
    assert stats["download_bytes"] == len(raw.content)


async def test_lines_come_in_completion_order_not_input_order() -> None:
    prompts = [f"picture {i}" for i in range(12)]
    async with emulator(config(**delay(0))) as (client, _):
        source = await upload(client, jsonl(prompts, image_size="512"))
        job = (await create(client, source["name"])).json()
        lines = await download_lines(client, job["metadata"]["output"]["responsesFile"])
    keys = [line["key"] for line in lines]
    assert sorted(keys) == sorted(f"row-{i}" for i in range(12))
    assert keys != sorted(keys, key=lambda key: int(key.split("-")[1]))


async def test_an_inline_job_answers_inline_in_input_order() -> None:
    async with emulator(config(**delay(0))) as (client, app):
        job = (await create(client, ["a cat", "a dog #block"], image_size="512")).json()
        assert state(job) == "BATCH_STATE_SUCCEEDED"
        assert "inputConfig" not in job["metadata"]
        fetched = await get(client, job["name"])
    for document in (job, fetched):
        answers = document["response"]["inlinedResponses"]["inlinedResponses"]
        assert answers == document["metadata"]["output"]["inlinedResponses"]["inlinedResponses"]
        assert [a["metadata"]["key"] for a in answers] == ["row-0", "row-1"]
        assert answers[0]["response"]["candidates"][0]["finishReason"] == "STOP"
        assert answers[1]["response"]["promptFeedback"]["blockReason"] == "PROHIBITED_CONTENT"
    assert app.stats_snapshot()["batch_billed"] == 1


async def test_invalid_requests_become_error_lines_with_rpc_codes() -> None:
    async with emulator(config(**delay(0))) as (client, app):
        data = jsonl(["fine"], image_size="512") + b'{"key": "bad", "request": {"size": "1x1"}}\n'
        data += b"not json\n"
        source = await upload(client, data)
        job = (await create(client, source["name"])).json()
        assert job["metadata"]["batchStats"] == {
            "requestCount": "3",
            "successfulRequestCount": "1",
            "failedRequestCount": "2",
        }
        lines = await download_lines(client, job["metadata"]["output"]["responsesFile"])
    errors = [line for line in lines if "error" in line]
    assert {line.get("key") for line in errors} == {"bad", None}
    assert {line["error"]["code"] for line in errors} == {3}  # INVALID_ARGUMENT
    assert app.stats_snapshot()["batch_billed"] == 1


async def test_billed_duplicates_count_across_online_and_batch() -> None:
    async with emulator(config(**delay(0))) as (client, app):
        request = body("the same lighthouse", image_size="512")
        assert (await generate(client, request)).status_code == 200
        await create(client, ["the same lighthouse", "another one"], image_size="512")
    stats = app.stats_snapshot()
    assert stats["billed"] == 1
    assert stats["batch_billed"] == 2
    assert stats["distinct_billed"] == 2
    assert stats["billed_duplicates"] == 1


async def test_transient_tokens_are_error_lines_and_count_their_attempts() -> None:
    async with emulator(config(**delay(0))) as (client, app):
        first = (await create(client, ["a kite #503x1"], image_size="512")).json()
        second = (await create(client, ["a kite #503x1"], image_size="512")).json()
    (failed,) = first["response"]["inlinedResponses"]["inlinedResponses"]
    assert failed["error"]["code"] == 14  # UNAVAILABLE
    (retried,) = second["response"]["inlinedResponses"]["inlinedResponses"]
    assert "response" in retried
    stats = app.stats_snapshot()
    assert stats["batch_billed"] == 1
    assert stats["faults"] == {"503": 1}


async def test_time_scale_shortens_the_delay() -> None:
    clock = FakeClock()
    async with emulator(config(clock=clock, time_scale=0.01, **delay(1000))) as (client, _):
        job = (await create(client, ["a cat"], image_size="512")).json()
        clock.advance(9.9)
        assert state(await get(client, job["name"])) == "BATCH_STATE_RUNNING"
        clock.advance(0.1)
        assert state(await get(client, job["name"])) == "BATCH_STATE_SUCCEEDED"


async def test_jobs_list_in_pages_newest_first_and_delete() -> None:
    clock = FakeClock()
    async with emulator(config(clock=clock, **delay(50))) as (client, _):
        names = []
        for i in range(3):
            names.append((await create(client, [f"cat {i}"])).json()["name"])
            clock.advance(1)
        first = (await client.get("/v1beta/batches?pageSize=2", headers=AUTH)).json()
        assert [op["name"] for op in first["operations"]] == names[::-1][:2]
        token = first["nextPageToken"]
        rest = (await client.get(f"/v1beta/batches?pageToken={token}", headers=AUTH)).json()
        assert [op["name"] for op in rest["operations"]] == names[:1]
        assert (await client.delete(f"/v1beta/{names[0]}", headers=AUTH)).status_code == 200
        assert (await client.get(f"/v1beta/{names[0]}", headers=AUTH)).status_code == 404


async def test_bad_creates_are_refused() -> None:
    async with emulator() as (client, _):
        unknown = await create(client, ["a cat"], model="gemini-9-image")
        assert unknown.status_code == 404
        missing = await create(client, "files/nothere")
        assert missing.status_code == 400
        both = await client.post(
            f"/v1beta/models/{FLASH_31}:batchGenerateContent",
            json={"batch": {"input_config": {"file_name": "files/x", "requests": {}}}},
            headers=AUTH,
        )
        assert both.status_code == 400
        stray = await client.post(
            f"/v1beta/models/{FLASH_31}:batchGenerateContent",
            json={"batch": {"size": 3}},
            headers=AUTH,
        )
        assert stray.status_code == 400
        assert "Unknown name" in stray.json()["error"]["message"]
        keyless = await client.get("/v1beta/batches")
        assert keyless.status_code == 403


async def test_reset_forgets_jobs_and_files() -> None:
    async with emulator(config(**delay(0))) as (client, app):
        source = await upload(client, jsonl(["a cat"]))
        job = (await create(client, source["name"])).json()
        app.reset_stats()
        assert (await client.get(f"/v1beta/{job['name']}", headers=AUTH)).status_code == 404
        assert (await client.get(f"/v1beta/{source['name']}", headers=AUTH)).status_code == 404
        assert app.stats_snapshot()["batch_jobs_created"] == 0


async def test_a_result_download_resumes_with_range() -> None:
    async with emulator(config(**delay(0))) as (client, app):
        source = await upload(client, jsonl(["a cat", "a dog"], image_size="512"))
        job = (await create(client, source["name"])).json()
        path = f"/download/v1beta/{job['response']['responsesFile']}:download?alt=media"
        whole = (await client.get(path, headers=AUTH)).content
        tail = await client.get(path, headers={**AUTH, "Range": "bytes=100-"})
        assert tail.status_code == 206
        assert tail.headers["content-range"] == f"bytes 100-{len(whole) - 1}/{len(whole)}"
        assert whole[:100] + tail.content == whole
        beyond = await client.get(path, headers={**AUTH, "Range": f"bytes={len(whole)}-"})
        assert beyond.status_code == 416
    assert app.stats_snapshot()["download_bytes"] == 2 * len(whole) - 100


async def test_a_download_stops_when_the_client_goes_away() -> None:
    prompts = [f"a harbour {i}" for i in range(6)]
    async with emulator(config(payload=Payload.REALISTIC, **delay(0))) as (client, app):
        source = await upload(client, jsonl(prompts, image_size="1K"))
        job = (await create(client, source["name"])).json()
        output = job["response"]["responsesFile"]
        size = int((await client.get(f"/v1beta/{output}", headers=AUTH)).json()["sizeBytes"])
    first_piece = anyio.Event()
    sent: list[Message] = []

    async def receive() -> Message:
        if not sent:
            return {"type": "http.request", "body": b"", "more_body": False}
        await first_piece.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "http.response.body":
            first_piece.set()
            await anyio.lowlevel.checkpoint()  # a socket write lets the server notice too

    scope = {
        "type": "http",
        "method": "GET",
        "path": f"/v1beta/{output}:download",
        "query_string": b"alt=media",
        "headers": [(b"host", b"emulator"), (b"x-goog-api-key", KEY.encode())],
    }
    await app(scope, receive, send)
    downloaded = app.stats_snapshot()["download_bytes"]
    assert isinstance(downloaded, int)
    assert 0 < downloaded < size  # a megabyte or two went out of several
