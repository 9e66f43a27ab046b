"""Helpers for the Files and Batch API tests: raw HTTP calls the way a client makes them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx

from tests.emulator.emulator_helpers import FLASH_31, KEY, body

AUTH = {"x-goog-api-key": KEY}


async def start_upload(
    client: httpx.AsyncClient, size: int, *, version: str = "v1beta", name: str | None = None
) -> str:
    """Start a resumable upload; the session URL."""
    meta: dict[str, Any] = {"display_name": "requests"}
    if name is not None:
        meta["name"] = name
    answer = await client.post(
        f"/upload/{version}/files",
        json={"file": meta},
        headers={
            **AUTH,
            "X-Goog-Upload-Protocol": "resumable",
            "X-Goog-Upload-Command": "start",
            "X-Goog-Upload-Header-Content-Length": str(size),
            "X-Goog-Upload-Header-Content-Type": "application/jsonl",
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-goog-upload-status"] == "active"
    return answer.headers["x-goog-upload-url"]


async def send_chunk(
    client: httpx.AsyncClient, url: str, data: bytes, offset: int, *, last: bool
) -> httpx.Response:
    command = "upload, finalize" if last else "upload"
    headers = {"X-Goog-Upload-Command": command, "X-Goog-Upload-Offset": str(offset)}
    return await client.post(url, content=data, headers=headers)


async def query(client: httpx.AsyncClient, url: str) -> httpx.Response:
    return await client.post(url, headers={"X-Goog-Upload-Command": "query"})


async def upload(
    client: httpx.AsyncClient, data: bytes, *, chunk: int = 1 << 20, version: str = "v1beta"
) -> dict[str, Any]:
    """Upload ``data`` in chunks; the file resource."""
    url = await start_upload(client, len(data), version=version)
    offset = 0
    while True:
        piece = data[offset : offset + chunk]
        last = offset + len(piece) >= len(data)
        answer = await send_chunk(client, url, piece, offset, last=last)
        assert answer.status_code == 200, answer.text
        offset += len(piece)
        if last:
            assert answer.headers["x-goog-upload-status"] == "final"
            resource: dict[str, Any] = answer.json()["file"]
            return resource


def jsonl(prompts: Sequence[str], **request: Any) -> bytes:
    """An input file: one ``{"key": "row-i", "request": ...}`` line per prompt."""
    lines = [
        json.dumps({"key": f"row-{i}", "request": body(prompt, **request)})
        for i, prompt in enumerate(prompts)
    ]
    return ("\n".join(lines) + "\n").encode()


async def create(
    client: httpx.AsyncClient,
    source: str | Sequence[str],
    *,
    model: str = FLASH_31,
    version: str = "v1beta",
    **request: Any,
) -> httpx.Response:
    """Create a job from a file name or, given prompts, from inline requests."""
    if isinstance(source, str):
        config: dict[str, Any] = {"file_name": source}
    else:
        entries = [
            {"request": body(prompt, **request), "metadata": {"key": f"row-{i}"}}
            for i, prompt in enumerate(source)
        ]
        config = {"requests": {"requests": entries}}
    payload = {"batch": {"display_name": "test job", "input_config": config}}
    return await client.post(
        f"/{version}/models/{model}:batchGenerateContent", json=payload, headers=AUTH
    )


async def get(client: httpx.AsyncClient, name: str, *, version: str = "v1beta") -> dict[str, Any]:
    answer = await client.get(f"/{version}/{name}", headers=AUTH)
    assert answer.status_code == 200, answer.text
    job: dict[str, Any] = answer.json()
    return job


async def download_lines(
    client: httpx.AsyncClient, file_name: str, *, by_url: bool = False
) -> list[dict[str, Any]]:
    prefix = "/download" if by_url else ""
    answer = await client.get(f"{prefix}/v1beta/{file_name}:download?alt=media", headers=AUTH)
    assert answer.status_code == 200, answer.text
    return [json.loads(line) for line in answer.content.splitlines()]


def state(job: dict[str, Any]) -> str:
    value: str = job["metadata"]["state"]
    return value
