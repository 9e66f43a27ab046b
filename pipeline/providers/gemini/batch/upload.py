"""The Files API's resumable upload, client side: a request file of any size goes up in 8 MiB
chunks, read from disk one at a time, and resumes where the server says it stopped.

1. ``start``: ``POST /upload/{v}/files`` (``X-Goog-Upload-Protocol: resumable``, ``Command:
   start``, the size and type, ``{"file": {"displayName"}}``) -> the session URL in
   ``x-goog-upload-url``. The session URL is a credential (whoever holds it may write the file):
   it is sent without the API key, as the SDK does, and never appears in a message.
2. ``send``: ``query`` first (``x-goog-upload-size-received``: the acknowledged offset), so a
   resumed upload sends only what is missing and a finalized one sends nothing; then
   ``upload`` chunks at that offset, the last ``upload, finalize``. All bytes acknowledged but
   not finalized (the finalizing chunk's answer was lost) -> a bare ``finalize``.
3. A chunk that fails (a dropped connection, an error) is not resent blindly: the offset is
   queried again and sending resumes there. Only failures in a row without progress count
   towards the limit; each waits a little longer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread
import orjson

from pipeline.core import jsonread as jr
from pipeline.core.types import Delivery, NoAnswer, Outcome, OutcomeKind, RawResponse
from pipeline.providers.batchapi import BatchCallError, OnProgress, RemoteFile
from pipeline.providers.gemini.batch.calls import Api, failure, read_object, secrets_of
from pipeline.providers.gemini.batch.wire import read_file
from pipeline.providers.gemini.errormap import malformed
from pipeline.providers.http import HttpClient

CHUNK_BYTES = 8 * 1024 * 1024  # a multiple of the protocol's 256 KiB granularity
CHUNK_TIMEOUT_S = 600.0  # 8 MiB on a slow uplink
MAX_FAILURES = 6  # chunk failures in a row with no byte acknowledged in between
JSONL = "application/jsonl"

Sleep = Callable[[float], Awaitable[None]]
FindFile = Callable[[], Awaitable[RemoteFile | None]]


@dataclass(frozen=True, slots=True)
class Session:
    """What a session said about itself: ``final`` (the file exists) and how much it holds."""

    final: bool
    received: int
    file: RemoteFile | None  # the file, when the answer carried it


async def start(api: Api, client: HttpClient, *, size: int, display_name: str) -> str:
    """Open a session for ``size`` bytes; its URL."""
    headers = {
        "content-type": "application/json",
        "x-goog-upload-protocol": "resumable",
        "x-goog-upload-command": "start",
        "x-goog-upload-header-content-length": str(size),
        "x-goog-upload-header-content-type": JSONL,
    }
    body = orjson.dumps({"file": {"displayName": display_name}})
    answer = await api.call(
        client, "start_upload", "POST", api.upload_url(), body=body, headers=headers
    )
    url = answer.headers.get("x-goog-upload-url")
    if not url or not url.startswith(("https://", "http://")):
        raise BatchCallError(
            malformed(answer.status, "no upload session URL in the answer"), "start_upload"
        )
    return url


async def query(client: HttpClient, session_url: str) -> Session | None:
    """The session's state; None when the server no longer knows it."""
    answer = await _session_call(
        client, "upload_offset", session_url, {"x-goog-upload-command": "query"}
    )
    if isinstance(answer, NoAnswer) or answer.status not in range(200, 300):
        if isinstance(answer, RawResponse) and answer.status in (404, 410):
            return None
        raise failure("upload_offset", answer, secrets=secrets_of(None, session_url))
    status = answer.headers.get("x-goog-upload-status", "").lower()
    if status not in ("active", "final"):
        return None  # "cancelled", or no session at all
    received = jr.integer(answer.headers.get("x-goog-upload-size-received")) or 0
    return Session(status == "final", received, _file_in(answer))


async def send(
    client: HttpClient,
    session_url: str,
    path: Path,
    *,
    chunk_bytes: int = CHUNK_BYTES,
    on_offset: OnProgress | None = None,
    find_file: FindFile | None = None,
    sleep: Sleep = anyio.sleep,
) -> RemoteFile:
    """Send what the session lacks of ``path``; the finalized file. ``find_file`` looks the
    file up when the session is finalized already but its answer is gone (a crash right after
    the last chunk): a finished file is never uploaded again."""
    size = (await anyio.Path(path).stat()).st_size
    failures = 0
    last_error: BatchCallError | None = None
    best = -1
    while failures <= MAX_FAILURES:
        if failures > 1:  # the first resume is at once: a dropped answer is the usual case
            await sleep(min(2.0 ** (failures - 1), 60.0))
        try:
            session = await query(client, session_url)
            if session is None:
                raise _gone()
            if session.received > best:
                best, failures = session.received, 0  # progress: the count starts again
            if on_offset is not None:
                on_offset(session.received)
            if session.final:
                return await _finished(session, find_file)
            if session.received > size:
                raise _mismatch(session.received, size)
            return await _send_from(
                client,
                session_url,
                path,
                offset=session.received,
                size=size,
                chunk_bytes=chunk_bytes,
                on_offset=on_offset,
            )
        except BatchCallError as e:
            if e.outcome.kind is OutcomeKind.RUN_ERROR or e.outcome.reason in _FINAL_REASONS:
                raise
            last_error = e
            failures += 1
    assert last_error is not None
    raise last_error


async def _send_from(
    client: HttpClient,
    session_url: str,
    path: Path,
    *,
    offset: int,
    size: int,
    chunk_bytes: int,
    on_offset: OnProgress | None,
) -> RemoteFile:
    while True:
        length = min(chunk_bytes, size - offset)
        last = offset + length >= size
        if length == 0:
            command, data = "finalize", b""  # every byte is there: only the finalize was lost
        else:
            command = "upload, finalize" if last else "upload"
            data = await anyio.to_thread.run_sync(_read, path, offset, length)
        headers = {"x-goog-upload-command": command, "x-goog-upload-offset": str(offset)}
        answer = await _session_call(client, "upload", session_url, headers, data)
        if isinstance(answer, NoAnswer) or answer.status not in range(200, 300):
            raise failure("upload", answer, secrets=secrets_of(None, session_url))
        acknowledged = jr.integer(answer.headers.get("x-goog-upload-size-received"))
        offset = acknowledged if acknowledged is not None else offset + length
        if on_offset is not None:
            on_offset(offset)
        if answer.headers.get("x-goog-upload-status", "").lower() == "final":
            found = _file_in(answer)
            if found is None:
                raise BatchCallError(
                    malformed(answer.status, "the finalized upload names no file"), "upload"
                )
            return found
        if length == 0:
            raise BatchCallError(malformed(answer.status, "finalize did not finalize"), "upload")


def _read(path: Path, offset: int, length: int) -> bytes:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read(length)


async def _session_call(
    client: HttpClient,
    call: str,
    session_url: str,
    headers: dict[str, str],
    data: bytes | None = None,
) -> RawResponse | NoAnswer:
    # No API key: the session URL is the session's credential (as the SDK sends it).
    timeout_s = CHUNK_TIMEOUT_S if data else 120.0
    return await client.fetch("POST", session_url, data, headers, timeout_s)


def _file_in(answer: RawResponse) -> RemoteFile | None:
    if not answer.body.strip():
        return None
    try:
        document = read_object("upload", answer)
    except BatchCallError:
        return None
    return read_file(document.get("file"))


async def _finished(session: Session, find_file: FindFile | None) -> RemoteFile:
    if session.file is not None:
        return session.file
    found = await find_file() if find_file is not None else None
    if found is None:
        raise BatchCallError(
            _final_outcome(
                "UPLOAD_FINAL_UNKNOWN_FILE",
                "the upload session is finalized but its file could not be found: "
                "list the files by display name",
            ),
            "upload",
        )
    return found


_FINAL_REASONS = frozenset({"UPLOAD_SESSION_GONE", "UPLOAD_MISMATCH", "UPLOAD_FINAL_UNKNOWN_FILE"})


def _final_outcome(reason: str, message: str) -> Outcome:
    return Outcome(OutcomeKind.ROW_ERROR, reason, message=message, delivery=Delivery.ERROR)


def _gone() -> BatchCallError:
    message = "the upload session is gone (expired or cancelled): start a new upload"
    return BatchCallError(_final_outcome("UPLOAD_SESSION_GONE", message), "upload")


def _mismatch(received: int, size: int) -> BatchCallError:
    message = f"the session holds {received} bytes but the file has {size}: start a new upload"
    return BatchCallError(_final_outcome("UPLOAD_MISMATCH", message), "upload")
