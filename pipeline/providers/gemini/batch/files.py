"""The Files API's resources: list (every page), get, delete. Uploads are ``upload``'s."""

from __future__ import annotations

from pipeline.providers.batchapi import RemoteFile
from pipeline.providers.gemini.batch.calls import NOT_FOUND, Api, name_path, read_object
from pipeline.providers.gemini.batch.wire import read_file
from pipeline.providers.http import HttpClient


async def list_files(api: Api, client: HttpClient) -> list[RemoteFile]:
    items = await api.pages(client, "list_files", "files", "files")
    return [f for f in map(read_file, items) if f is not None]


async def get_file(api: Api, client: HttpClient, name: str) -> RemoteFile | None:
    """The file; None when the server does not know it (404). An id the Files API rejects
    (over 40 characters) raises ``BatchCallError`` with its 400."""
    url = api.url(name_path(name, "files"))
    answer = await api.call(client, "get_file", "GET", url, missing_ok=True)
    if answer.status == NOT_FOUND:
        return None
    return read_file(read_object("get_file", answer))


async def delete_file(api: Api, client: HttpClient, name: str) -> None:
    """Delete a file; one that is gone already is fine."""
    url = api.url(name_path(name, "files"))
    await api.call(client, "delete_file", "DELETE", url, missing_ok=True)
