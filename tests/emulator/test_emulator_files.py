"""The Files API: resumable uploads (chunks, query, resume after failures), get, list, delete."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import httpx
import pytest

from pipeline.emulator import create_app, parse_batch_faults
from pipeline.emulator.exchange import Message
from tests.emulator.batch_helpers import AUTH, query, send_chunk, start_upload, upload
from tests.emulator.emulator_helpers import config, emulator

DATA = b"".join(b'{"key": "row-%d", "request": {}}\n' % i for i in range(5000))


@pytest.mark.parametrize("version", ["v1beta", "v1"])
async def test_a_chunked_upload_becomes_an_active_file(version: str) -> None:
    async with emulator() as (client, app):
        resource = await upload(client, DATA, chunk=64 * 1024, version=version)
        assert resource["name"].startswith("files/")
        assert resource["sizeBytes"] == str(len(DATA))
        assert resource["state"] == "ACTIVE"
        assert resource["source"] == "UPLOADED"
        assert resource["mimeType"] == "application/jsonl"
        digest = hashlib.sha256(DATA).hexdigest().encode()
        assert resource["sha256Hash"] == base64.b64encode(digest).decode()
        fetched = await client.get(f"/{version}/{resource['name']}", headers=AUTH)
        assert fetched.json() == resource
    stats = app.stats_snapshot()
    assert stats["files_uploaded"] == 1
    assert stats["upload_bytes"] == len(DATA)


async def test_a_lost_chunk_answer_is_resumed_from_the_queried_offset() -> None:
    # Every chunk is stored but its answer is lost: the client must ask where to go on.
    faults = parse_batch_faults("upload_reset=1")
    async with emulator(config(batch_faults=faults)) as (client, app):
        url = await start_upload(client, len(DATA))
        with pytest.raises(httpx.RemoteProtocolError):
            await send_chunk(client, url, DATA[:100_000], 0, last=False)
        status = await query(client, url)
        assert status.headers["x-goog-upload-status"] == "active"
        assert status.headers["x-goog-upload-size-received"] == "100000"
        # Sending the same chunk again would be a wrong offset, and is refused.
        again = await send_chunk(client, url, DATA[:100_000], 0, last=False)
        assert again.status_code == 400
        assert again.headers["x-goog-upload-size-received"] == "100000"
        with pytest.raises(httpx.RemoteProtocolError):
            await send_chunk(client, url, DATA[100_000:], 100_000, last=True)
        assert (await query(client, url)).headers["x-goog-upload-size-received"] == str(len(DATA))
        final = await client.post(url, headers={"X-Goog-Upload-Command": "finalize"})
        assert final.headers["x-goog-upload-status"] == "final"
        assert final.json()["file"]["sizeBytes"] == str(len(DATA))
    stats = app.stats_snapshot()
    assert stats["faults"] == {"upload_reset": 2}
    assert stats["upload_bytes"] == len(DATA)


async def test_a_chunk_cut_off_midway_keeps_nothing_of_it() -> None:
    app = create_app(config())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://emulator"
    ) as client:
        url = await start_upload(client, len(DATA))
        first = await send_chunk(client, url, DATA[:1000], 0, last=False)
        assert first.headers["x-goog-upload-size-received"] == "1000"
    # A chunk announced at 5000 bytes whose connection drops after 2000 of them.
    messages: list[Message] = [
        {"type": "http.request", "body": DATA[1000:3000], "more_body": True},
        {"type": "http.disconnect"},
    ]
    path, _, query_string = url.partition("emulator")[2].partition("?")
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": query_string.encode(),
        "headers": [
            (b"host", b"emulator"),
            (b"x-goog-upload-command", b"upload"),
            (b"x-goog-upload-offset", b"1000"),
            (b"content-length", b"5000"),
        ],
    }

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        raise AssertionError(f"no answer expected on a dropped connection: {message}")

    await app(scope, receive, send)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://emulator"
    ) as client:
        assert (await query(client, url)).headers["x-goog-upload-size-received"] == "1000"
    assert app.stats_snapshot()["upload_bytes"] == 1000


async def test_finalizing_short_of_the_declared_size_is_refused_and_resumable() -> None:
    async with emulator() as (client, _):
        url = await start_upload(client, 10)
        short = await send_chunk(client, url, b"12345", 0, last=True)
        assert short.status_code == 400
        assert short.headers["x-goog-upload-status"] == "active"
        done = await send_chunk(client, url, b"67890", 5, last=True)
        assert done.json()["file"]["sizeBytes"] == "10"


async def test_upload_start_needs_a_key_but_session_urls_do_not() -> None:
    async with emulator() as (client, _):
        refused = await client.post(
            "/upload/v1beta/files",
            json={"file": {}},
            headers={"X-Goog-Upload-Protocol": "resumable", "X-Goog-Upload-Command": "start"},
        )
        assert refused.status_code == 403
        url = await start_upload(client, 3)
        answer = await send_chunk(client, url, b"abc", 0, last=True)  # no key on chunks
        assert answer.headers["x-goog-upload-status"] == "final"


async def test_an_unknown_session_says_final_so_clients_stop() -> None:
    async with emulator() as (client, _):
        answer = await query(client, "http://emulator/upload/v1beta/files?upload_id=nope")
        assert answer.status_code == 404
        assert answer.headers["x-goog-upload-status"] == "final"


async def test_files_can_be_named_listed_in_pages_and_deleted() -> None:
    async with emulator() as (client, _):
        url = await start_upload(client, 2, name="files/my-input")
        await send_chunk(client, url, b"{}", 0, last=True)
        taken = await client.post(
            "/upload/v1beta/files",
            json={"file": {"name": "files/my-input"}},
            headers={
                **AUTH,
                "X-Goog-Upload-Protocol": "resumable",
                "X-Goog-Upload-Command": "start",
            },
        )
        assert taken.status_code == 409
        for _ in range(2):
            await upload(client, b"{}\n")
        first = (await client.get("/v1beta/files?pageSize=2", headers=AUTH)).json()
        assert len(first["files"]) == 2
        token = first["nextPageToken"]
        rest = (
            await client.get(f"/v1beta/files?pageSize=2&pageToken={token}", headers=AUTH)
        ).json()
        assert len(rest["files"]) == 1
        assert "nextPageToken" not in rest
        assert (await client.delete("/v1beta/files/my-input", headers=AUTH)).status_code == 200
        assert (await client.get("/v1beta/files/my-input", headers=AUTH)).status_code == 404
        assert (await client.delete("/v1beta/files/my-input", headers=AUTH)).status_code == 404


async def test_uploaded_files_cannot_be_downloaded() -> None:
    async with emulator() as (client, _):
        resource = await upload(client, DATA[:100])
        answer = await client.get(f"/v1beta/{resource['name']}:download?alt=media", headers=AUTH)
        assert answer.status_code == 400


async def test_uploads_past_the_storage_quota_are_refused_until_files_are_deleted() -> None:
    async with emulator(config(files_quota_bytes=250)) as (client, _):
        kept = await upload(client, DATA[:200])
        refused = await client.post(
            "/upload/v1beta/files",
            json={"file": {}},
            headers={
                **AUTH,
                "X-Goog-Upload-Protocol": "resumable",
                "X-Goog-Upload-Command": "start",
                "X-Goog-Upload-Header-Content-Length": "100",
            },
        )
        assert refused.status_code == 429
        assert refused.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
        await client.delete(f"/v1beta/{kept['name']}", headers=AUTH)
        await upload(client, DATA[:100])
