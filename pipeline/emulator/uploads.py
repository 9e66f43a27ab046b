"""The Files API's resumable upload protocol (what the google-genai SDK speaks; headers are
case-insensitive):

1. ``POST /upload/{v}/files`` with ``X-Goog-Upload-Protocol: resumable``, ``X-Goog-Upload-Command:
   start``, ``X-Goog-Upload-Header-Content-Length`` / ``-Content-Type`` and a JSON body
   ``{"file": {"display_name", "name"?, ...}}`` -> ``x-goog-upload-status: active`` and
   ``x-goog-upload-url``, the session URL (``...?upload_id=ID&upload_protocol=resumable``).
2. ``POST <session url>`` with ``X-Goog-Upload-Command: upload`` (the last: ``upload, finalize``),
   ``X-Goog-Upload-Offset`` and the bytes -> ``active``; the finalizing answer is ``final`` with
   ``{"file": {...}}``. ``query`` answers ``x-goog-upload-size-received``: the offset to resume
   from after a failure; ``cancel`` abandons the session.

Every answer on a session carries ``x-goog-upload-status`` (errors too: without it the SDK retries
blindly). A chunk at the wrong offset is a 400 that says the offset received (UNCONFIRMED shape).
Chunks are streamed to disk, never held whole. The ``upload_reset`` batch fault stores a chunk
and then drops the connection, so the client never learns it arrived and must query.
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs

from pipeline.emulator.batchspecs import BatchFault
from pipeline.emulator.config import EmulatorConfig
from pipeline.emulator.errors import ApiError, invalid_argument
from pipeline.emulator.exchange import Exchange, Headers, Scope
from pipeline.emulator.faults import unit
from pipeline.emulator.files_api import FilesApi, base_url, header
from pipeline.emulator.filestore import FileStore
from pipeline.emulator.schema import camel
from pipeline.emulator.stats import RunState
from pipeline.emulator.timestamps import WallClock

MAX_FILE_BYTES = 2 * 1024**3
_GRANULARITY = b"262144"
_VALID_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


class UploadApi:
    """Resumable upload sessions over the file store."""

    def __init__(
        self,
        store: FileStore,
        state: RunState,
        config: EmulatorConfig,
        wall: WallClock,
        files: FilesApi,
    ) -> None:
        self._store = store
        self._state = state
        self._config = config
        self._wall = wall
        self._files = files

    async def upload(self, scope: Scope, exchange: Exchange, version: str) -> None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        command = {
            part.strip().lower()
            for part in (header(scope, b"x-goog-upload-command") or "").split(",")
            if part.strip()
        }
        upload_id = (query.get("upload_id") or [""])[0]
        if upload_id:
            await self._session_command(scope, exchange, upload_id, command)
        else:
            await self._start(scope, exchange, version, command)

    async def _start(
        self, scope: Scope, exchange: Exchange, version: str, command: set[str]
    ) -> None:
        body = await exchange.read_body()
        protocol = (header(scope, b"x-goog-upload-protocol") or "").lower()
        if protocol != "resumable" or command != {"start"}:
            await exchange.error(
                invalid_argument(
                    "Only the resumable upload protocol is emulated: send X-Goog-Upload-Protocol:"
                    " resumable and X-Goog-Upload-Command: start."
                )
            )
            return
        try:
            document = json.loads(body) if body.strip() else {}
            raw = document.get("file", {}) if isinstance(document, dict) else None
            if not isinstance(raw, dict):
                raise ValueError
            meta = {camel(key): value for key, value in raw.items()}
            length_text = header(scope, b"x-goog-upload-header-content-length")
            size = int(length_text) if length_text is not None else meta.get("sizeBytes")
            size = None if size is None else int(size)
        except (ValueError, TypeError, UnicodeDecodeError):
            await exchange.error(invalid_argument("Invalid JSON payload received."))
            return
        if size is not None and (size < 0 or size > MAX_FILE_BYTES):
            await exchange.error(
                invalid_argument(f"File size {size} exceeds the limit of {MAX_FILE_BYTES} bytes.")
            )
            return
        stored = sum(f.size for f in self._store.files.values())
        if size is not None and stored + size > self._config.files_quota_bytes:
            await exchange.error(
                ApiError(
                    429,
                    "RESOURCE_EXHAUSTED",
                    f"File storage quota exceeded: {stored} of {self._config.files_quota_bytes} "
                    "bytes are in use. Delete files you no longer need.",
                )
            )
            return
        name = str(meta.get("name") or "").removeprefix("files/") or None
        if name is not None and not _VALID_ID.match(name):
            await exchange.error(
                invalid_argument(
                    f"Invalid file name files/{name}: use at most 40 lowercase letters, digits "
                    "or dashes, not starting with a dash."
                )
            )
            return
        if name is not None and self._store.taken(name):
            await exchange.error(
                ApiError(409, "ALREADY_EXISTS", f"File files/{name} already exists.")
            )
            return
        mime = header(scope, b"x-goog-upload-header-content-type") or str(
            meta.get("mimeType") or "application/octet-stream"
        )
        display = meta.get("displayName")
        session = self._store.start(name, display if isinstance(display, str) else None, mime, size)
        url = f"{base_url(scope)}/upload/{version}/files?upload_id={session.session_id}"
        url += "&upload_protocol=resumable"
        headers = [
            (b"x-goog-upload-status", b"active"),
            (b"x-goog-upload-url", url.encode()),
            (b"x-goog-upload-control-url", url.encode()),
            (b"x-goog-upload-chunk-granularity", _GRANULARITY),
        ]
        await exchange.reply(200, b"", headers)

    async def _session_command(
        self, scope: Scope, exchange: Exchange, upload_id: str, command: set[str]
    ) -> None:
        session = self._store.sessions.get(upload_id)
        if session is None:
            await exchange.error(_no_session(), [(b"x-goog-upload-status", b"final")])
            return
        status = b"final" if session.final else b"active"
        progress: Headers = [
            (b"x-goog-upload-status", status),
            (b"x-goog-upload-size-received", str(session.received).encode()),
        ]
        if "query" in command:
            await exchange.reply(200, b"", progress)
            return
        if "cancel" in command:
            del self._store.sessions[upload_id]
            session.path.unlink(missing_ok=True)
            await exchange.reply(200, b"", [(b"x-goog-upload-status", b"cancelled")])
            return
        if session.final or not command <= {"upload", "finalize"} or not command:
            message = "This upload is already finalized." if session.final else "Bad command."
            await exchange.error(invalid_argument(message), progress)
            return
        if "upload" in command:
            offset = header(scope, b"x-goog-upload-offset")
            if offset is None or offset.strip() != str(session.received):
                await exchange.error(
                    invalid_argument(
                        f"Invalid X-Goog-Upload-Offset {offset}: {session.received} bytes received;"
                        " query the upload status and resume from there."
                    ),
                    progress,
                )
                return
            length = header(scope, b"content-length")
            expected = int(length) if length is not None and length.isdigit() else None
            written = await self._store.append(session, exchange.body_chunks(), expected)
            if written < 0:
                return  # the client went away mid-chunk: nothing of it is kept
            limit = session.declared_size if session.declared_size is not None else MAX_FILE_BYTES
            if session.received > limit:
                session.received -= written
                await exchange.error(
                    invalid_argument(f"The upload is larger than its declared {limit} bytes."),
                    progress,
                )
                return
            self._state.upload_bytes += written
            if self._lost_answer(session.session_id, session.received - written):
                # Stored, but the answer never arrives: the client must query the offset.
                self._state.faults["upload_reset"] += 1
                await exchange.reset([b'{"file": {}}'], 0)
                return
        await self._finish_chunk(scope, exchange, session.session_id, command)

    async def _finish_chunk(
        self, scope: Scope, exchange: Exchange, upload_id: str, command: set[str]
    ) -> None:
        session = self._store.sessions[upload_id]
        received = str(session.received).encode()
        if "finalize" not in command:
            headers = [
                (b"x-goog-upload-status", b"active"),
                (b"x-goog-upload-size-received", received),
            ]
            await exchange.reply(200, b"", headers)
            return
        if session.declared_size is not None and session.received != session.declared_size:
            await exchange.error(
                invalid_argument(
                    f"Finalized with {session.received} bytes, but the upload declared "
                    f"{session.declared_size}."
                ),
                [(b"x-goog-upload-status", b"active"), (b"x-goog-upload-size-received", received)],
            )
            return
        stored = await self._store.finalize(session, self._wall.now())
        self._state.files_uploaded += 1
        version = scope["path"].split("/")[2]
        body = json.dumps(
            {"file": self._files.resource(stored, base_url(scope), version)}, indent=2
        )
        await exchange.reply(200, body.encode(), [(b"x-goog-upload-status", b"final")])

    def _lost_answer(self, session_id: str, offset: int) -> bool:
        rate = self._config.batch_faults.rate(BatchFault.UPLOAD_RESET)
        if rate <= 0:
            return False
        return unit(self._config.seed, "upload_reset", session_id.encode(), offset) < rate


def _no_session() -> ApiError:
    return ApiError(404, "NOT_FOUND", "No such upload session (it was cancelled or finished).")
