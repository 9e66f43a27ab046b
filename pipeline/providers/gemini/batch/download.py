"""A finished job's results, streamed to a file on disk: memory does not grow with their size.

- A file job: the Files API says where its output file is (``downloadUri``, else the SDK's
  ``files/{id}:download``). An id the Files API rejects (over 40 characters, a real bug of the
  API) is fetched by its download URL, which takes any id. A file not there yet (404), or not
  ACTIVE, is ``ResultsNotReady``: poll again.
- A partial file from an earlier attempt resumes with ``Range: bytes=N-``: a 206 appends, a
  200 (the server ignored the range) starts over, a 416 naming the size we hold means done.
- Redirects are followed here, not by the HTTP library: the next address gets the API's
  credentials only if it is the API's own origin, and none at all otherwise (httpx would strip
  only ``Authorization``, letting ``x-goog-api-key`` or ``?key=`` travel on).
- An inline job: its results are inside the job. The job's JSON is streamed to a spool file,
  then its results are written out as result lines (``lines.result_line``), so the folding
  reads one format. Inline jobs are small by construction (their requests ride in the create
  call, under 20 MB), so that parse is bounded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO
from urllib.parse import urljoin

import anyio
import anyio.to_thread

from pipeline.core import jsonread as jr
from pipeline.core.types import NoAnswer, TransportFailure
from pipeline.providers.batchapi import (
    BatchCallError,
    JobState,
    OnProgress,
    RemoteJob,
    ResultsNotReady,
)
from pipeline.providers.gemini.batch.calls import Api, failure, name_path, secrets_of
from pipeline.providers.gemini.batch.files import get_file
from pipeline.providers.gemini.batch.lines import result_line
from pipeline.providers.gemini.batch.wire import inline_results, read_job
from pipeline.providers.gemini.classify import classify_failure
from pipeline.providers.gemini.errormap import malformed
from pipeline.providers.http import HttpClient

FLUSH_BYTES = 1 << 20  # written to disk in pieces of this size, off the event loop
MAX_HOPS = 5  # redirects followed for one download
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_BAD_ID, _NOT_FOUND, _UNSATISFIABLE = 400, 404, 416
_CALL = "download_results"
_MIN_RATE = 1_000_000  # bytes/s a download must keep up, for its whole-attempt time limit


async def download_results(
    api: Api, client: HttpClient, job: RemoteJob, dest: Path, on_bytes: OnProgress | None
) -> int:
    if job.output_file is not None:
        return await _download_file(
            api, client, job, name=job.output_file, dest=dest, on_bytes=on_bytes
        )
    spool = dest.with_name(dest.name + ".job.json")
    await anyio.Path(spool).unlink(missing_ok=True)  # a job's JSON changes: never resumed
    try:
        await _fetch(
            api,
            client,
            api.url(name_path(job.name, "batches")),
            spool,
            expected=None,
            on_bytes=None,
        )
        current, written = await anyio.to_thread.run_sync(_write_inline, spool, dest)
    finally:
        await anyio.Path(spool).unlink(missing_ok=True)
    if current is not None and current.output_file is not None:
        return await _download_file(
            api, client, current, name=current.output_file, dest=dest, on_bytes=on_bytes
        )
    if written is not None:
        if on_bytes is not None:
            on_bytes(written)
        return written
    if current is None or current.state is JobState.SUCCEEDED:
        raise ResultsNotReady(f"{job.name} has no results to read yet")
    await anyio.to_thread.run_sync(_write_empty, dest)  # ended without results: none to fold
    return 0


async def _download_file(
    api: Api,
    client: HttpClient,
    job: RemoteJob,
    *,
    name: str,
    dest: Path,
    on_bytes: OnProgress | None,
) -> int:
    try:
        remote = await get_file(api, client, name)
    except BatchCallError as e:
        if e.outcome.http_status != _BAD_ID:
            raise
        # The Files API rejects the id; its download URL serves it all the same.
        return await _fetch(
            api, client, api.download_url(name), dest, expected=None, on_bytes=on_bytes
        )
    if remote is None or remote.state not in ("", "ACTIVE"):
        raise ResultsNotReady(f"the results of {job.name} ({name}) cannot be read yet")
    files_path = api.url(name_path(name, "files") + ":download", alt="media")
    url = remote.download_uri or files_path
    try:
        return await _fetch(
            api, client, url, dest, expected=remote.size_bytes or None, on_bytes=on_bytes
        )
    except BatchCallError as e:
        if e.outcome.http_status != _BAD_ID or url == api.download_url(name):
            raise
        return await _fetch(
            api, client, api.download_url(name), dest, expected=None, on_bytes=on_bytes
        )


async def _fetch(
    api: Api,
    client: HttpClient,
    url: str,
    dest: Path,
    *,
    expected: int | None,
    on_bytes: OnProgress | None,
) -> int:
    """Stream ``url`` into ``dest``, resuming what ``dest`` holds; the size of ``dest``."""
    path = anyio.Path(dest)
    have = (await path.stat()).st_size if await path.exists() else 0
    if expected is not None and have == expected:
        return have
    if expected is not None and have > expected:
        have = 0  # not this file's beginning: start over
    hops = 0
    restarted = False
    while True:
        sink = _FileSink(dest, have, on_bytes)
        credentials = await api.credentials(_CALL) if api.same_origin(url) else None
        target, headers = api.sign(url, {"range": f"bytes={have}-"} if have else {}, credentials)
        timeout_s = 300.0 + (expected - have if expected else 20 * 10**9) / _MIN_RATE
        try:
            answer = await client.stream(target, headers, timeout_s, sink)
        except _Misplaced:
            if restarted:
                raise BatchCallError(
                    malformed(206, "a range that was not asked for"), _CALL
                ) from None
            have, restarted = 0, True  # ask for the whole file instead
            continue
        finally:
            await sink.close()
        have = sink.size
        secrets = secrets_of(credentials)
        if isinstance(answer, NoAnswer):
            raise failure(_CALL, answer, secrets=secrets)
        status = answer.status
        if 200 <= status < 300:
            break
        location = answer.headers.get("location")
        if status in _REDIRECTS and location and hops < MAX_HOPS:
            url, hops = urljoin(url, location), hops + 1
            continue
        if status == _UNSATISFIABLE and not restarted:
            if _total(answer.headers) == have:
                break  # we hold the whole file already
            have, restarted = 0, True
            continue
        if status == _NOT_FOUND:
            raise ResultsNotReady("the results file is not there yet")
        raise failure(_CALL, answer, secrets=secrets)
    if expected is not None and have != expected:
        outcome = classify_failure(
            *NoAnswer(TransportFailure.CONNECTION, f"got {have} of {expected} bytes", sent=True)
        )
        raise BatchCallError(outcome, _CALL)
    return have


class _FileSink:
    """Writes a body to ``path`` in ``FLUSH_BYTES`` pieces, in a worker thread: appending to
    the ``have`` bytes already there for a 206 that starts where they end, else from zero."""

    def __init__(self, path: Path, have: int, on_bytes: OnProgress | None) -> None:
        self.path = path
        self.size = have
        self._on_bytes = on_bytes
        self._buffer = bytearray()
        self._file: IO[bytes] | None = None

    async def start(self, status: int, headers: Mapping[str, str]) -> None:
        first = _first(headers) if status == 206 else 0
        if first not in (0, self.size):
            raise _Misplaced  # a piece from elsewhere in the file: nowhere to write it
        resumed = status == 206 and first == self.size
        if not resumed:
            self.size = 0
        mode = "ab" if resumed else "wb"
        self._file = await anyio.to_thread.run_sync(_open, self.path, mode)

    async def write(self, chunk: bytes) -> None:
        self._buffer += chunk
        if len(self._buffer) >= FLUSH_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        if self._file is None or not self._buffer:
            return
        data = bytes(self._buffer)
        self._buffer.clear()
        await anyio.to_thread.run_sync(self._file.write, data)
        self.size += len(data)
        if self._on_bytes is not None:
            self._on_bytes(self.size)

    async def close(self) -> None:
        """Keep what arrived (a cut body is still the file's beginning), durably: the caller
        journals the download after this."""
        if self._file is None:
            return
        with anyio.CancelScope(shield=True):
            try:
                await self._flush()
                await anyio.to_thread.run_sync(_sync, self._file)
            finally:
                self._file.close()


class _Misplaced(Exception):
    """A 206 whose range starts neither where our file ends nor at its beginning."""


def _open(path: Path, mode: str) -> IO[bytes]:
    return path.open(mode)


def _sync(file: IO[bytes]) -> None:
    file.flush()
    os.fsync(file.fileno())


def _first(headers: Mapping[str, str]) -> int | None:
    """The first byte of a 206's ``Content-Range: bytes A-B/N``."""
    value = headers.get("content-range", "")
    start = value.removeprefix("bytes ").split("-", 1)[0].strip()
    return int(start) if start.isdigit() else None


def _total(headers: Mapping[str, str]) -> int | None:
    """N of a 416's ``Content-Range: bytes */N``."""
    total = headers.get("content-range", "").rpartition("/")[2].strip()
    return int(total) if total.isdigit() else None


def _write_inline(spool: Path, dest: Path) -> tuple[RemoteJob | None, int | None]:
    """The job as re-read, and the size of ``dest`` once its inline results are written as
    lines (None when the job carries none)."""
    data = jr.loads(spool.read_bytes())
    entries = inline_results(data)
    job = read_job(data)
    if entries is None:
        return job, None
    part = dest.with_name(dest.name + ".part")
    with part.open("wb") as out:
        for entry in entries:
            line = result_line(entry)
            out.write(line if line is not None else b"{}\n")  # a bad entry: a bad line
        out.flush()
        os.fsync(out.fileno())
    del data, entries
    part.replace(dest)
    return job, dest.stat().st_size


def _write_empty(dest: Path) -> None:
    with dest.open("wb") as out:
        os.fsync(out.fileno())
