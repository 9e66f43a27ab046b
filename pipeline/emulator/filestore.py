"""The Files API's storage: uploaded and generated files, and resumable upload sessions, kept on
disk in a temporary directory the emulator owns (result files can be gigabytes: nothing here
holds a file's bytes in memory).

An upload session's bytes go to a ``.part`` file. A chunk counts only once its whole body has
arrived: a chunk cut off midway is truncated back to the last acknowledged offset, which is the
offset a client's ``query`` then reads and resumes from. Finalizing renames the part to the file.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import tempfile
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
READ_CHUNK = 1024 * 1024


@dataclass(slots=True)
class StoredFile:
    """A file resource. Times are on the emulator's clock."""

    file_id: str
    display_name: str | None
    mime_type: str
    size: int
    sha256_hex: str
    created: float
    path: Path
    generated: bool  # a batch's output (downloadable) rather than an upload
    ready_at: float  # before this, the file is not readable yet (a "late file")


@dataclass(slots=True)
class UploadSession:
    """A resumable upload in progress; ``received`` is the last acknowledged offset."""

    session_id: str
    file_id: str
    display_name: str | None
    mime_type: str
    declared_size: int | None
    path: Path
    received: int = 0
    final: bool = False


def make_id(seed: int, purpose: str, number: int, length: int) -> str:
    """A lowercase alphanumeric id, as Google's, drawn from (seed, purpose, number)."""
    digest = hashlib.sha256(f"{seed}:{purpose}:{number}".encode()).digest()
    value = int.from_bytes(digest, "big")
    chars = []
    for _ in range(length):
        value, digit = divmod(value, 36)
        chars.append(_ALPHABET[digit])
    return "".join(chars)


class FileStore:
    """Files and upload sessions of one emulator; the directory is made on first use."""

    def __init__(self, parent: Path | None, seed: int) -> None:
        self._parent = parent
        self._seed = seed
        self._root: Path | None = None
        self._numbers = 0
        self.files: dict[str, StoredFile] = {}
        self.sessions: dict[str, UploadSession] = {}

    @property
    def root(self) -> Path:
        if self._root is None:
            root = Path(tempfile.mkdtemp(prefix="nanobatch-emulator-", dir=self._parent))
            # Removed with the store (or at exit): the emulator owns these bytes.
            weakref.finalize(self, shutil.rmtree, root, ignore_errors=True)
            self._root = root
        return self._root

    def new_id(self, purpose: str, length: int) -> str:
        self._numbers += 1
        return make_id(self._seed, purpose, self._numbers, length)

    def new_path(self, suffix: str) -> Path:
        return self.root / f"{self.new_id('path', 16)}{suffix}"

    def start(
        self, file_id: str | None, display_name: str | None, mime_type: str, size: int | None
    ) -> UploadSession:
        session = UploadSession(
            session_id=self.new_id("upload", 32),
            file_id=file_id or self.new_id("file", 12),
            display_name=display_name,
            mime_type=mime_type,
            declared_size=size,
            path=self.new_path(".part"),
        )
        session.path.touch()
        self.sessions[session.session_id] = session
        return session

    def taken(self, file_id: str) -> bool:
        return file_id in self.files or any(
            s.file_id == file_id and not s.final for s in self.sessions.values()
        )

    async def append(
        self, session: UploadSession, chunks: AsyncIterator[bytes], expected: int | None
    ) -> int:
        """Write a chunk at the session's offset; its length, or -1 if it did not arrive whole
        (then nothing of it is kept)."""
        start = session.received
        written = 0
        async with await anyio.open_file(session.path, "r+b") as out:
            await out.seek(start)
            async for chunk in chunks:
                await out.write(chunk)
                written += len(chunk)
            whole = expected is None or written == expected
            await out.truncate(start + written if whole else start)
        if not whole:
            return -1
        session.received = start + written
        return written

    async def finalize(self, session: UploadSession, now: float) -> StoredFile:
        path = session.path.with_suffix("")
        await anyio.to_thread.run_sync(os.replace, session.path, path)
        digest = await anyio.to_thread.run_sync(_sha256_hex, path)
        session.final = True
        stored = StoredFile(
            file_id=session.file_id,
            display_name=session.display_name,
            mime_type=session.mime_type,
            size=session.received,
            sha256_hex=digest,
            created=now,
            path=path,
            generated=False,
            ready_at=now,
        )
        self.files[stored.file_id] = stored
        return stored

    def add_generated(
        self, file_id: str, path: Path, mime_type: str, now: float, ready_at: float
    ) -> StoredFile:
        stored = StoredFile(
            file_id=file_id,
            display_name=None,
            mime_type=mime_type,
            size=path.stat().st_size,
            sha256_hex="",
            created=now,
            path=path,
            generated=True,
            ready_at=ready_at,
        )
        self.files[file_id] = stored
        return stored

    def get(self, file_id: str, now: float) -> StoredFile | None:
        stored = self.files.get(file_id)
        return stored if stored is not None and stored.ready_at <= now else None

    def listing(self, now: float) -> list[StoredFile]:
        """Readable files, newest first (as Google lists them)."""
        ready = [f for f in self.files.values() if f.ready_at <= now]
        return sorted(ready, key=lambda f: (-f.created, f.file_id))

    def delete(self, file_id: str) -> bool:
        stored = self.files.pop(file_id, None)
        if stored is None:
            return False
        stored.path.unlink(missing_ok=True)
        return True

    def clear(self) -> None:
        """Forget every file and session and remove their bytes."""
        for stored in self.files.values():
            stored.path.unlink(missing_ok=True)
        for session in self.sessions.values():
            session.path.unlink(missing_ok=True)
        self.files.clear()
        self.sessions.clear()


def sha256_field(hex_digest: str) -> str:
    """``sha256Hash`` as the Files API shows it: base64 of the hex digest's text."""
    return base64.b64encode(hex_digest.encode()).decode()


def _sha256_hex(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(READ_CHUNK):
            digest.update(block)
    return digest.hexdigest()


async def read_range(path: Path, start: int, end: int) -> AsyncIterator[bytes]:
    """Bytes ``start`` to ``end`` (exclusive) of a file, a megabyte at a time."""
    async with await anyio.open_file(path, "rb") as source:
        await source.seek(start)
        left = end - start
        while left > 0:
            block = await source.read(min(READ_CHUNK, left))
            if not block:
                return
            left -= len(block)
            yield block
