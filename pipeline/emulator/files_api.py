"""The Files API over HTTP, apart from uploads (``uploads``): get, list, delete and download.

Downloads are streamed from disk in 1 MiB pieces and honour ``Range`` (answered 206). An output
file whose id is over 40 characters (the ``long_id`` batch fault, a real bug of the API) is
rejected by get, delete and the SDK's ``/{v}/files/{id}:download`` path with Google's 400, and
served by its download URL, ``/download/{v}/files/{id}:download?alt=media``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

from pipeline.emulator.errors import ApiError, invalid_argument
from pipeline.emulator.exchange import Exchange, Scope
from pipeline.emulator.filestore import FileStore, StoredFile, read_range, sha256_field
from pipeline.emulator.stats import RunState
from pipeline.emulator.timestamps import WallClock

MAX_FILE_ID = 40
_FILE_TTL_S = 48 * 3600
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_PAGE_DEFAULT, _PAGE_MAX = 10, 100


def base_url(scope: Scope) -> str:
    """The URL the client used to reach us (session and download URLs are absolute)."""
    host = dict(scope["headers"]).get(b"host", b"localhost").decode("latin-1")
    return f"{scope.get('scheme', 'http')}://{host}"


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def page(scope: Scope, total: int) -> tuple[int, int]:
    """(start, end) of the page ``pageSize``/``pageToken`` ask for; tokens are offsets."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    size_text = (query.get("pageSize") or query.get("page_size") or [""])[0]
    token = (query.get("pageToken") or query.get("page_token") or [""])[0]
    size = int(size_text) if size_text.isdigit() and int(size_text) > 0 else _PAGE_DEFAULT
    start = int(token) if token.isdigit() else 0
    return start, min(start + min(size, _PAGE_MAX), total)


def too_long(file_id: str, method: str) -> ApiError | None:
    """The Files API's check that batch output ids over 40 characters fail (a real bug)."""
    if len(file_id) <= MAX_FILE_ID:
        return None
    return invalid_argument(
        f"* {method}.name: File ID (name excluding 'files/') cannot be more than "
        f"{MAX_FILE_ID} characters.\n"
    )


class FilesApi:
    """Handlers of the Files API; ``refresh`` waits for batch results being written, so that
    a job's output file is complete before it is shown."""

    def __init__(
        self,
        store: FileStore,
        state: RunState,
        wall: WallClock,
        refresh: Callable[[], Awaitable[None]],
    ) -> None:
        self._store = store
        self._state = state
        self._wall = wall
        self._refresh = refresh

    def resource(self, stored: StoredFile, base: str, version: str) -> dict[str, object]:
        created = self._wall.rfc3339(stored.created)
        out: dict[str, object] = {"name": f"files/{stored.file_id}"}
        if stored.display_name:
            out["displayName"] = stored.display_name
        out |= {
            "mimeType": stored.mime_type,
            "sizeBytes": str(stored.size),
            "createTime": created,
            "updateTime": created,
            "expirationTime": self._wall.rfc3339(stored.created + _FILE_TTL_S),
        }
        if stored.sha256_hex:
            out["sha256Hash"] = sha256_field(stored.sha256_hex)
        out["uri"] = f"{base}/{version}/files/{stored.file_id}"
        if stored.generated:
            out["downloadUri"] = (
                f"{base}/download/{version}/files/{stored.file_id}:download?alt=media"
            )
        out["state"] = "ACTIVE"
        out["source"] = "GENERATED" if stored.generated else "UPLOADED"
        return out

    async def _answer(self, exchange: Exchange, document: object) -> None:
        await exchange.reply(200, json.dumps(document, indent=2).encode())

    async def get(self, scope: Scope, exchange: Exchange, version: str, file_id: str) -> None:
        await self._refresh()
        stored = await self._find(exchange, file_id, "GetFileRequest")
        if stored is not None:
            await self._answer(exchange, self.resource(stored, base_url(scope), version))

    async def _find(
        self, exchange: Exchange, file_id: str, request: str | None
    ) -> StoredFile | None:
        """The file ``file_id`` names, or None once the error is answered: an id too long for
        ``request`` (None: a path that does not check it), or no such file (yet)."""
        rejected = None if request is None else too_long(file_id, request)
        if rejected is not None:
            await exchange.error(rejected)
            return None
        stored = self._store.get(file_id, self._wall.now())
        if stored is None:
            await exchange.error(_not_found(file_id))
        return stored

    async def listing(self, scope: Scope, exchange: Exchange, version: str) -> None:
        await self._refresh()
        files = self._store.listing(self._wall.now())
        start, end = page(scope, len(files))
        base = base_url(scope)
        document: dict[str, object] = {}
        if end > start:
            document["files"] = [self.resource(f, base, version) for f in files[start:end]]
        if end < len(files):
            document["nextPageToken"] = str(end)
        await self._answer(exchange, document)

    async def delete(self, exchange: Exchange, file_id: str) -> None:
        if await self._find(exchange, file_id, "DeleteFileRequest") is not None:
            self._store.delete(file_id)
            await self._answer(exchange, {})

    async def download(
        self, scope: Scope, exchange: Exchange, file_id: str, *, by_url: bool
    ) -> None:
        """``/{v}/files/{id}:download`` (the SDK's path, which checks the id's length) or
        ``/download/{v}/files/{id}:download`` (the download URL, which does not)."""
        await self._refresh()
        stored = await self._find(exchange, file_id, None if by_url else "DownloadFileRequest")
        if stored is None:
            return
        if not stored.generated:
            await exchange.error(
                invalid_argument("Only generated files can be downloaded; this file was uploaded.")
            )
            return
        start, end = 0, stored.size
        status = 200
        wanted = header(scope, b"range")
        if wanted is not None:
            span = _range(wanted, stored.size)
            if span is None:
                await exchange.error(
                    ApiError(416, "OUT_OF_RANGE", "Requested range not satisfiable."),
                    [(b"content-range", f"bytes */{stored.size}".encode())],
                )
                return
            (start, end), status = span, 206
        headers: list[tuple[bytes, bytes]] = [
            (b"content-type", stored.mime_type.encode()),
            (b"accept-ranges", b"bytes"),
        ]
        if status == 206:
            headers.append((b"content-range", f"bytes {start}-{end - 1}/{stored.size}".encode()))
        chunks = read_range(stored.path, start, end)
        self._state.download_bytes += await exchange.stream(status, end - start, headers, chunks)


def _range(value: str, size: int) -> tuple[int, int] | None:
    """The [start, end) a ``Range: bytes=A-B`` header asks for, or None if unsatisfiable."""
    match = _RANGE.match(value.strip())
    if match is None or not (match[1] or match[2]):
        return None
    if not match[1]:  # the last N bytes
        start, end = max(size - int(match[2]), 0), size
    else:
        start = int(match[1])
        end = min(int(match[2]) + 1, size) if match[2] else size
    if start >= size or end <= start:
        return None
    return start, end


def _not_found(file_id: str) -> ApiError:
    return ApiError(
        404, "NOT_FOUND", f"File files/{file_id} not found or you do not have access to it."
    )
