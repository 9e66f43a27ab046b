"""Routes of the Files and Batch APIs (Gemini API key auth, ``v1`` and ``v1beta``), and the
state they share: the file store and the batch engine.

| request | handler |
|---|---|
| ``POST /upload/{v}/files`` | resumable upload: start, then chunks, query, cancel |
| ``GET /{v}/files``, ``GET``/``DELETE /{v}/files/{id}`` | list, get, delete |
| ``GET /{v}/files/{id}:download``, ``GET /download/{v}/files/{id}:download`` | download |
| ``POST /{v}/models/{m}:batchGenerateContent`` | create a batch |
| ``GET /{v}/batches``, ``GET``/``DELETE /{v}/batches/{id}``, ``POST .../{id}:cancel`` | the rest |
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pipeline.emulator import errors
from pipeline.emulator.batch_api import BatchApi
from pipeline.emulator.batch_engine import BatchEngine
from pipeline.emulator.config import EmulatorConfig
from pipeline.emulator.errors import ApiError
from pipeline.emulator.exchange import Exchange, Scope
from pipeline.emulator.files_api import FilesApi
from pipeline.emulator.filestore import FileStore
from pipeline.emulator.images import Renderer
from pipeline.emulator.stats import RunState
from pipeline.emulator.timestamps import WallClock
from pipeline.emulator.uploads import UploadApi

_V = r"(?P<version>v1beta|v1|v1alpha)"
_ID = r"(?P<id>[^/:]+)"
_ROUTES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), name)
    for pattern, name in (
        (rf"^/upload/{_V}/files$", "upload"),
        (rf"^/download/{_V}/files/{_ID}:download$", "download_url"),
        (rf"^/{_V}/files$", "files"),
        (rf"^/{_V}/files/{_ID}:download$", "download"),
        (rf"^/{_V}/files/{_ID}$", "file"),
        (rf"^/{_V}/models/(?P<model>[^:]+):batchGenerateContent$", "create"),
        (rf"^/{_V}/batches$", "batches"),
        (rf"^/{_V}/batches/{_ID}:cancel$", "cancel"),
        (rf"^/{_V}/batches/{_ID}$", "batch"),
    )
)
# The method each route answers (a resource route answers two).
_METHODS = {
    "upload": {"POST"},
    "download_url": {"GET"},
    "files": {"GET"},
    "download": {"GET"},
    "file": {"GET", "DELETE"},
    "create": {"POST"},
    "batches": {"GET"},
    "cancel": {"POST"},
    "batch": {"GET", "DELETE"},
}


class BatchSurface:
    """The Files and Batch APIs of one emulator."""

    def __init__(
        self, config: EmulatorConfig, state: RunState, renderer: Renderer, wall: WallClock
    ) -> None:
        self.store = FileStore(config.files_dir, config.seed)
        self.engine = BatchEngine(config, state, self.store, renderer, wall)
        self.files = FilesApi(self.store, state, wall, self.engine.outputs)
        self.uploads = UploadApi(self.store, state, config, wall, self.files)
        self.batches = BatchApi(self.engine, wall)

    def clear(self) -> None:
        """Forget every job, file and upload (``/_emulator/reset``)."""
        self.engine.clear()
        self.store.clear()

    async def handle(
        self,
        scope: Scope,
        exchange: Exchange,
        authenticate: Callable[[Scope], ApiError | None],
    ) -> bool:
        """Answer a Files or Batch API request; False if the path is none of theirs."""
        path = scope["path"]
        found = next(
            ((m, name) for pattern, name in _ROUTES if (m := pattern.match(path)) is not None),
            None,
        )
        if found is None:
            return False
        match, name = found
        if scope["method"] not in _METHODS[name]:
            await exchange.read_body()
            await exchange.error(errors.route_not_found())
            return True
        # A session URL is its own credential: the SDK sends its chunks without the key.
        session = name == "upload" and b"upload_id=" in scope.get("query_string", b"")
        denied = None if session else authenticate(scope)
        if denied is not None:
            await exchange.read_body()
            await exchange.error(denied)
            return True
        await self._dispatch(name, match, scope, exchange)
        return True

    async def _dispatch(
        self, name: str, match: re.Match[str], scope: Scope, exchange: Exchange
    ) -> None:
        version = match["version"]
        method = scope["method"]
        if name == "upload":
            await self.uploads.upload(scope, exchange, version)
        elif name in ("download", "download_url"):
            await self.files.download(scope, exchange, match["id"], by_url=name == "download_url")
        elif name == "files":
            await self.files.listing(scope, exchange, version)
        elif name == "file" and method == "GET":
            await self.files.get(scope, exchange, version, match["id"])
        elif name == "file":
            await self.files.delete(exchange, match["id"])
        elif name == "create":
            await self.batches.create(exchange, version, match["model"])
        elif name == "batches":
            await self.batches.listing(scope, exchange)
        elif name == "cancel":
            await self.batches.cancel(exchange, match["id"])
        elif method == "GET":
            await self.batches.get(exchange, match["id"])
        else:
            await self.batches.delete(exchange, match["id"])
