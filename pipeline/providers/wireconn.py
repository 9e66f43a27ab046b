"""One HTTP/1.1 connection of ``wire``'s and the answer it is receiving: asyncio's protocol on
one side, llhttp's callbacks (``httptools``) on the other, and the caller's waits between.

An answer's body is buffered as it arrives and handed to its reader in pieces; the caller is
woken once the answer is whole or ``WAKE_BYTES`` of its body are in, then per ``WAKE_BYTES``,
and the socket stops being read past ``PAUSE_BYTES`` until the reader catches up. A
connection is fit to carry another request only when its answer was whole, kept alive, read
to the end, and nothing unasked followed it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httptools
import httpx

# Body bytes buffered before the reader is woken, and before the socket stops being read
# (TCP then holds the server back): a few buffers per answer in flight, whatever its size.
WAKE_BYTES = 256 * 1024
PAUSE_BYTES = 512 * 1024
# An answer's head (interim answers included): an API's is a few KB. Unbounded, llhttp's
# header callbacks would gather an endless one in memory (and copy it again at every read).
MAX_HEAD_BYTES = 64 * 1024


class _Unasked(Exception):
    """Bytes after the answer, in the same read: llhttp stops there (``_break``)."""


class Connection(asyncio.Protocol):
    """One keep-alive connection and the answer it is receiving, if any."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.lost = False  # the connection is gone (or broken): never reused
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        # As aiohttp reads answers (its parser is llhttp too): an answer to a billed request
        # that it took and this refused would be paid for again. Framing stays strict.
        self._parser.set_dangerous_leniencies(
            lenient_headers=True,  # a folded value, control bytes in a value
            lenient_optional_cr_before_lf=True,  # bare line feeds
            lenient_spaces_after_chunk_size=True,
        )
        self._busy = False  # a request was written and its answer is not whole yet
        self._bodiless = False  # that request was HEAD: its answer has no body, whatever it says
        self._waiter: asyncio.Future[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.head = False  # the answer's head is in
        self.whole = False  # the answer is in, body and all
        self.keep_alive = False
        self.error: httpx.TransportError | None = None
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.paused = False
        self.until_eof = False  # a body with neither a length nor chunks ends with the stream
        self.head_bytes = 0  # read while the head was not yet in

    # asyncio's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self._busy or self.whole:  # bytes nobody asked for: never trusted again
            self._break(httpx.RemoteProtocolError("unexpected bytes on an idle connection"))
            return
        if not self.head:
            self.head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._break(httpx.RemoteProtocolError(type(e).__name__))
            return
        if not self.head and self.head_bytes > MAX_HEAD_BYTES:  # all it read was head
            self._break(httpx.RemoteProtocolError(f"a head over {MAX_HEAD_BYTES // 1024} KB"))

    def eof_received(self) -> bool:
        if self._busy and self.head and self.until_eof:
            self._done(keep_alive=False)
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._busy and not self.whole and self.error is None:
            if exc is None or isinstance(exc, ConnectionResetError | BrokenPipeError):
                self.error = httpx.RemoteProtocolError("ServerDisconnected")
            else:
                self.error = httpx.ReadError(type(exc).__name__)
        self._wake()

    # llhttp's side

    def on_message_begin(self) -> None:
        if self.whole:  # a second answer to one request, in the same read: parsed no further
            raise _Unasked

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp drops the whitespace before a value, not after it; aiohttp and h11 drop both.
        self.raw_headers.append((name, value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # an interim answer: the real one follows
            self.raw_headers = []
            return
        self.status = status
        self.head = True
        if self._bodiless:  # llhttp cannot be told: it would wait for the length the head names
            self._done(keep_alive=False)
            return
        # No length, and chunked not the last transfer coding (``gzip`` alone): llhttp reads the
        # body until the stream ends, so its end is the answer's.
        length = chunked = False
        for name, value in self.raw_headers:
            lower = name.lower()
            if lower == b"content-length":
                length = True
            elif lower == b"transfer-encoding":
                chunked = value.rpartition(b",")[2].strip().lower() == b"chunked"
        self.until_eof = not length and not chunked

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered >= PAUSE_BYTES and not self.paused and self.transport is not None:
            self.transport.pause_reading()
            self.paused = True
        if self.buffered >= WAKE_BYTES:
            self._wake()

    def on_message_complete(self) -> None:
        if self.head:  # not an interim answer's end
            self._done(keep_alive=self._parser.should_keep_alive())

    # the caller's side

    def _done(self, *, keep_alive: bool) -> None:
        self.whole = True
        self.keep_alive = keep_alive
        self._wake()

    def _break(self, error: httpx.TransportError) -> None:
        if self.error is None and not self.whole:
            self.error = error
        self.lost = True
        if self.transport is not None:
            self.transport.abort()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self) -> None:
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        await waiter

    def send(self, request: bytes, *, bodiless: bool = False) -> None:
        """Write a request; its answer is read through ``head`` and ``body``."""
        assert self.transport is not None
        self._reset()
        self._busy = True
        self._bodiless = bodiless
        self.transport.write(request)

    async def wait_head(self) -> None:
        """Until the head is in with the whole body or ``WAKE_BYTES`` of it: a small answer
        wakes its caller once, not twice."""
        while not self.whole:
            if self.head and (self.buffered >= WAKE_BYTES or self.lost):
                return  # the body, or how it broke off, is the reader's
            self._raise_if_broken()
            await self._wait()

    async def body(self) -> AsyncIterator[bytes]:
        while True:
            if self.chunks:
                chunks, self.chunks, self.buffered = self.chunks, [], 0
                if self.paused and self.transport is not None:
                    self.paused = False
                    self.transport.resume_reading()
                for chunk in chunks:
                    yield chunk
                continue
            if self.whole:
                return
            self._raise_if_broken()
            await self._wait()

    def _raise_if_broken(self) -> None:
        """The answer will not come whole: say how, as http.py reads it (it may have been
        billed)."""
        if self.error is not None:
            raise self.error
        if self.lost:
            raise httpx.RemoteProtocolError("ServerDisconnected")

    def finish(self) -> bool:
        """The answer's reader is done: True if the connection may carry another request."""
        reusable = self.whole and self.keep_alive and not self.lost and not self.chunks
        self._busy = False
        if not reusable:
            self.close()
        elif self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return reusable

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.abort()
