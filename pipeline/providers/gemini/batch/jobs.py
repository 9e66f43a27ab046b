"""The Batch API's jobs: create (from an uploaded file or inline requests), get, list (every
page), cancel, delete.

``create`` is not idempotent at the server (a resent create makes a second billed job), so it
is sent exactly once here: whoever calls it journals the intent first and, if the answer is
lost, looks for the job by display name before creating again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import orjson

from pipeline.core import jsonread as jr
from pipeline.providers.batchapi import BatchCallError, RemoteJob
from pipeline.providers.gemini.batch.calls import Api, name_path
from pipeline.providers.gemini.batch.wire import read_job
from pipeline.providers.gemini.errormap import malformed
from pipeline.providers.http import HttpClient


def input_config(file_name: str | None, inline: Sequence[bytes] | None) -> dict[str, Any]:
    """A job's ``inputConfig``: an uploaded file, or the request lines themselves."""
    if (file_name is None) == (inline is None):
        raise ValueError("create_job takes exactly one of file_name and inline")
    if file_name is not None:
        return {"fileName": file_name}
    return {"requests": {"requests": [_inline_entry(line) for line in inline or ()]}}


async def create_job(
    api: Api, client: HttpClient, model: str, display_name: str, source: dict[str, Any]
) -> RemoteJob:
    body = orjson.dumps({"batch": {"displayName": display_name, "inputConfig": source}})
    path = f"models/{quote(model.removeprefix('models/'), safe='')}:batchGenerateContent"
    headers = {"content-type": "application/json"}
    answer = await api.document(
        client, "create_job", "POST", api.url(path), body=body, headers=headers
    )
    return _job("create_job", answer)


async def get_job(api: Api, client: HttpClient, name: str) -> RemoteJob:
    answer = await api.document(client, "get_job", "GET", api.url(name_path(name, "batches")))
    return _job("get_job", answer)


async def list_jobs(api: Api, client: HttpClient) -> list[RemoteJob]:
    items = await api.pages(client, "list_jobs", "batches", "operations")
    return [j for j in map(read_job, items) if j is not None]


async def cancel_job(api: Api, client: HttpClient, name: str) -> None:
    url = api.url(name_path(name, "batches") + ":cancel")
    await api.call(client, "cancel_job", "POST", url, body=b"{}", headers=_JSON)


async def delete_job(api: Api, client: HttpClient, name: str) -> None:
    """Delete a job; one that is gone already is fine."""
    url = api.url(name_path(name, "batches"))
    await api.call(client, "delete_job", "DELETE", url, missing_ok=True)


_JSON = {"content-type": "application/json"}


def _inline_entry(line: bytes) -> dict[str, Any]:
    """A request line (``lines.request_line``) as an inline request: the key goes into
    ``metadata``. Inline jobs are small, so parsing the lines again costs nothing worth
    avoiding."""
    data = jr.loads(line)
    if not isinstance(data, dict) or not isinstance(data.get("key"), str):
        raise ValueError("an inline request must be a line made by request_line")
    return {"request": data.get("request"), "metadata": {"key": data["key"]}}


def _job(call: str, document: object) -> RemoteJob:
    job = read_job(document)
    if job is None:
        raise BatchCallError(malformed(200, "the answer describes no batch job"), call)
    return job
