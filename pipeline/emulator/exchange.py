"""One HTTP exchange over raw ASGI: read the body, answer (whole, in pieces, or dropped midway),
and wait for a while unless the client goes away.

The exchange records how it ended in the run's ``by_status`` counter exactly once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import anyio

from pipeline.emulator.config import EmulatorConfig
from pipeline.emulator.errors import ApiError
from pipeline.emulator.stats import RunState

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON = b"application/json; charset=UTF-8"
Headers = Sequence[tuple[bytes, bytes]]


def google_error(error: ApiError) -> tuple[int, bytes]:
    return error.code, error.body()


class Exchange:
    """One HTTP request/response; remembers whether an answer was recorded in the stats."""

    def __init__(
        self, receive: Receive, send: Send, state: RunState, config: EmulatorConfig
    ) -> None:
        self._receive = receive
        self._send = send
        self._state = state
        self._sleep = config.sleep
        self._time_scale = config.time_scale
        self.recorded = False
        # How an ApiError is written on this exchange's route (Vertex arrays, gateway shapes).
        self.render_error: Callable[[ApiError], tuple[int, bytes]] = google_error

    def _record(self, key: str) -> None:
        self.recorded = True
        self._state.answered(key)

    async def read_body(self) -> bytes:
        return await read_body(self._receive)

    async def body_chunks(self) -> AsyncIterator[bytes]:
        """The request body as it arrives, for bodies too large to hold (uploads); stops early
        if the client goes away, which the caller notices by counting bytes."""
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return

    async def _start(self, status: int, length: int, headers: Headers = ()) -> None:
        if not any(name == b"content-type" for name, _ in headers):
            headers = [(b"content-type", JSON), *headers]
        headers = [*headers, (b"content-length", str(length).encode())]
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def reply(self, status: int, body: bytes | list[bytes], headers: Headers = ()) -> None:
        """Send an answer; a list of pieces is written piece by piece, never joined."""
        self._record(str(status))
        pieces = [body] if isinstance(body, bytes) else body
        await self._start(status, sum(len(piece) for piece in pieces), headers)
        for piece in pieces[:-1]:
            await self._send({"type": "http.response.body", "body": piece, "more_body": True})
        await self._send({"type": "http.response.body", "body": pieces[-1]})

    async def error(self, error: ApiError, headers: Headers = ()) -> None:
        status, body = self.render_error(error)
        await self.reply(status, body, headers)

    async def stream(
        self, status: int, length: int, headers: Headers, chunks: AsyncIterator[bytes]
    ) -> int:
        """Send ``length`` bytes as ``chunks`` yields them (a file read from disk); the bytes
        handed to the server. Stops if the client goes away: a server drops what is sent to a
        closed connection without a word, so without the watch a gone client would still cost
        a whole read of the file."""
        self._record(str(status))
        await self._start(status, length, headers)
        sent = 0
        gone = anyio.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(self._watch, gone)
            async for chunk in chunks:
                if gone.is_set():
                    break
                sent += len(chunk)
                await self._send({"type": "http.response.body", "body": chunk, "more_body": True})
            if not gone.is_set():
                await self._send({"type": "http.response.body", "body": b""})
            group.cancel_scope.cancel()
        return sent

    async def reset(self, body: list[bytes], length: int) -> None:
        """Announce the whole body, send its first ``length`` bytes, then drop the connection."""
        self._record("reset")
        await self._start(200, sum(len(piece) for piece in body))
        part = cut(body, length)
        await self._send({"type": "http.response.body", "body": part, "more_body": True})
        # Returning now leaves the response incomplete: the server closes the connection.

    async def wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` of emulated time (scaled by ``--time-scale``), unless the client goes
        away first; False if it did."""
        seconds *= self._time_scale
        if seconds <= 0:
            return True
        gone = anyio.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(self._watch, gone, group.cancel_scope)
            await self._sleep(seconds)
            group.cancel_scope.cancel()
        return not gone.is_set()

    async def _watch(self, gone: anyio.Event, scope: anyio.CancelScope | None = None) -> None:
        """Set ``gone`` once the client disconnects, and cancel ``scope`` (the wait) if given."""
        while (await self._receive())["type"] != "http.disconnect":
            pass
        gone.set()
        if scope is not None:
            scope.cancel()


async def read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = JSON,
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    """A whole answer outside an API exchange (control, OAuth, metadata): not in ``by_status``."""
    start = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*start, *headers]})
    await send({"type": "http.response.body", "body": body})


def cut(pieces: list[bytes], length: int) -> bytes:
    """The first ``length`` bytes of a body given as pieces."""
    return b"".join(pieces)[:length]
