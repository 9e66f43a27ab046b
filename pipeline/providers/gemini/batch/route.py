"""``GeminiBatch``: the Gemini API's ``BatchRoute``, the seam's methods over this folder's
modules. Holds the address, the API version and the provider's ``Auth``; no per-job state."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from pipeline.providers.auth import Auth
from pipeline.providers.base import PreparedRequest
from pipeline.providers.batchapi import OnProgress, RemoteFile, RemoteJob, ResultLine
from pipeline.providers.gemini.batch import download, files, jobs, lines, upload
from pipeline.providers.gemini.batch.calls import PAGE_SIZE, Api
from pipeline.providers.http import HttpClient

BATCH_API_VERSION = "v1beta"  # where the Batch API is documented (and the SDK sends it)


@dataclass(frozen=True, slots=True)
class GeminiBatch:
    """The Files and Batch APIs at ``base_url`` (``GeminiProvider.batch_route``)."""

    base_url: str
    auth: Auth
    version: str = BATCH_API_VERSION
    chunk_bytes: int = upload.CHUNK_BYTES
    follow_links: bool = False  # result images given as links count as images (online's rule)
    sleep: upload.Sleep = field(default=anyio.sleep)  # between upload resumes
    page_size: int = PAGE_SIZE  # items asked for per page of a listing

    @property
    def api(self) -> Api:
        return Api(self.base_url, self.version, self.auth, self.page_size)

    async def start_upload(self, client: HttpClient, *, size: int, display_name: str) -> str:
        return await upload.start(self.api, client, size=size, display_name=display_name)

    async def send_upload(
        self,
        client: HttpClient,
        session_url: str,
        path: Path,
        *,
        on_offset: OnProgress | None = None,
        display_name: str | None = None,
    ) -> RemoteFile:
        async def find_file() -> RemoteFile | None:
            if display_name is None:
                return None
            found = [f for f in await self.list_files(client) if f.display_name == display_name]
            return found[-1] if found else None

        return await upload.send(
            client,
            session_url,
            path,
            chunk_bytes=self.chunk_bytes,
            on_offset=on_offset,
            find_file=find_file,
            sleep=self.sleep,
        )

    async def upload_offset(self, client: HttpClient, session_url: str) -> int | None:
        session = await upload.query(client, session_url)
        return None if session is None else session.received

    async def list_files(self, client: HttpClient) -> list[RemoteFile]:
        return await files.list_files(self.api, client)

    async def get_file(self, client: HttpClient, name: str) -> RemoteFile | None:
        return await files.get_file(self.api, client, name)

    async def delete_file(self, client: HttpClient, name: str) -> None:
        await files.delete_file(self.api, client, name)

    async def create_job(
        self,
        client: HttpClient,
        *,
        model: str,
        display_name: str,
        file_name: str | None = None,
        inline: Sequence[bytes] | None = None,
    ) -> RemoteJob:
        source = jobs.input_config(file_name, inline)
        return await jobs.create_job(self.api, client, model, display_name, source)

    async def get_job(self, client: HttpClient, name: str) -> RemoteJob:
        return await jobs.get_job(self.api, client, name)

    async def list_jobs(self, client: HttpClient) -> list[RemoteJob]:
        return await jobs.list_jobs(self.api, client)

    async def cancel_job(self, client: HttpClient, name: str) -> None:
        await jobs.cancel_job(self.api, client, name)

    async def delete_job(self, client: HttpClient, name: str) -> None:
        await jobs.delete_job(self.api, client, name)

    async def download_results(
        self,
        client: HttpClient,
        job: RemoteJob,
        dest: Path,
        *,
        on_bytes: OnProgress | None = None,
    ) -> int:
        return await download.download_results(self.api, client, job, dest, on_bytes)

    def request_line(self, key: str, request: PreparedRequest) -> bytes:
        return lines.request_line(key, request)

    def read_result_line(self, line: bytes) -> ResultLine:
        return lines.read_result_line(line, follow_links=self.follow_links)
