"""API calls on asyncio's own sockets: HTTP/1.1 written in one piece and parsed by llhttp
(``httptools``, uvicorn's parser), with keep-alive connections and nothing else.

A 512 px answer through aiohttp's client costs ~0.30 ms of CPU; here ~0.12 (1K 0.67 and 0.50,
4K 7.4 and 5.6: ``scripts/bench_receive.py``, docs/benchmarks.md, "HTTP stack"). aiohttp's
session builds a request object, a response object, a timer context and a Task to write the
body for every call, and wakes its caller for the head and per 64 KB of the body; this
protocol wakes its caller once the answer is whole or ``WAKE_BYTES`` of its body are in, and
then per ``WAKE_BYTES``.

Only a provider's API calls come here (``HttpClient.send``): no proxy, no credentials in the
URL, no read or pool timeout. Everything else (proxies, uploads, downloads, token endpoints)
stays on aiohttp (``aiotransport``). Exceptions are httpx's, with the meaning ``http.py``
gives them: a connection that could not be made (``ConnectError``, ``ConnectTimeout``) never
carried the request; once its bytes were written, a lost connection or a malformed answer
(``RemoteProtocolError``, ``ReadError``) may have been billed. The request's ``trace`` hears
``http11.send_request_headers.started`` just before they are written.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import yarl

from pipeline.core.slots import Slots
from pipeline.providers.wireconn import Connection

REDIRECTS = frozenset((301, 302, 303, 307, 308))

Trace = Callable[[str, dict[str, Any]], Awaitable[None]]
Key = tuple[str, str, int]  # scheme, host, port: an origin


@functools.cache
def default_tls() -> ssl.SSLContext:
    """httpx's TLS defaults and CA bundle, loaded once per process and only when a connection
    needs it (20-50 ms): one context serves every client and connection."""
    return httpx.create_ssl_context()


class WireAnswer:
    """An API call's answer (``bodies.Arrived``): headers as httpx gives them (names in lower
    case, repeated ones joined with ", ")."""

    __slots__ = ("_connection", "_key", "_wire", "headers", "status_code")

    def __init__(
        self, wire: Wire, key: Key, connection: Connection, headers: dict[str, str]
    ) -> None:
        self._wire = wire
        self._key = key
        self._connection: Connection | None = connection
        self.status_code = connection.status
        self.headers = headers

    @property
    def is_redirect(self) -> bool:
        return self.status_code in REDIRECTS and "location" in self.headers

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        assert self._connection is not None
        return self._connection.body()

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._wire.done(self._key, connection)

    def decoded(self) -> httpx.Response:
        """This answer as an httpx response, which decodes a compressed body as it is read."""
        assert self._connection is not None
        return httpx.Response(
            status_code=self.status_code,
            # The head as it came: httpx would encode decoded strings again as ASCII, and a
            # Latin-1 byte would raise here, the request sent and its slot never let go.
            headers=self._connection.raw_headers,
            stream=_Stream(self),
            extensions={"http_version": b"HTTP/1.1"},
        )


class _Stream(httpx.AsyncByteStream):
    def __init__(self, answer: WireAnswer) -> None:
        self._answer = answer

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._answer.aiter_bytes():
            yield chunk

    async def aclose(self) -> None:
        await self._answer.aclose()


class Wire:
    """At most ``connections`` requests at once, each on a connection of its own (a request
    beyond them waits, unsent, for one to end); keep-alive connections per origin, at most
    ``connections`` of them idle, an idle one dropped after ``keepalive_s`` (before a server
    would drop it)."""

    def __init__(self, connections: int, tls: ssl.SSLContext | None, keepalive_s: float) -> None:
        self._connections = connections
        self._slots = Slots(connections)  # requests at once: each has a connection of its own
        self._tls = tls  # None: the default one, loaded by the first https connection
        self._keepalive_s = keepalive_s
        self._idle: dict[Key, list[Connection]] = {}
        self._closed = False
        self._heads: dict[str, tuple[Key, bytes]] = {}  # by URL: key, request line

    async def call(
        self,
        method: str,
        url: str,
        parsed: yarl.URL,
        body: bytes | None,
        headers: list[tuple[str, str]],
        *,
        connect_s: float | None,
        trace: Trace | None,
    ) -> WireAnswer:
        """Send one request and return its answer once its head is in."""
        if trace is not None:  # as aiotransport: a trace heard, so a failure to connect is known
            await trace("wire.request.started", {})
        key, start = self._head(method, url, parsed)
        request = _request(start, headers, body)
        waits = self._slots.borrowed_tokens >= self._slots.total_tokens
        await self._slots.acquire()  # waiting here, the request was never sent
        connection = None
        try:
            connection = self._take(key)
            if connection is None:
                connection = await self._connect(key, connect_s)
                waits = True
            if waits:  # the attempt's deadline may have passed as the slot or connection came
                await _in_time()
            if trace is not None:
                await trace("http11.send_request_headers.started", {})
            connection.send(request, bodiless=method == "HEAD")
            await connection.wait_head()
        except BaseException:
            if connection is not None:
                connection.close()  # cancelled or broken mid-answer: never reused
            self._slots.release()
            raise
        return WireAnswer(self, key, connection, head_dict(connection.raw_headers))

    def _head(self, method: str, text: str, url: yarl.URL) -> tuple[Key, bytes]:
        """The origin and request line of ``method`` on ``url`` (``text`` parsed)."""
        known = self._heads.get(method + text)
        if known is None:
            if url.scheme not in ("http", "https") or not url.raw_host or url.port is None:
                raise httpx.UnsupportedProtocol(url.scheme or "no scheme")
            key = (url.scheme, url.raw_host, url.port)
            start = _encoded(f"{method} {url.raw_path_qs} HTTP/1.1")
            host = _encoded(f"Host: {url.host_port_subcomponent}")
            if len(self._heads) >= 64:  # a run calls a handful of addresses
                self._heads.clear()
            known = self._heads[method + text] = (key, start + b"\r\n" + host)
        return known

    def _take(self, key: Key) -> Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            transport = connection.transport
            if (
                not connection.lost
                and now - connection.idle_since < self._keepalive_s
                and not (transport is None or transport.is_closing())  # closed, not yet lost
            ):
                return connection
            connection.close()
        return None

    async def _connect(self, key: Key, connect_s: float | None) -> Connection:
        scheme, host, port = key
        tls = (self._tls or default_tls()) if scheme == "https" else None
        loop = asyncio.get_running_loop()
        try:
            made = loop.create_connection(
                Connection,
                host,
                port,
                ssl=tls,
                server_hostname=host if tls else None,
                # As aiohttp: the next address after 250 ms (a host whose IPv6 is black-holed).
                happy_eyeballs_delay=0.25,
            )
            _, connection = await asyncio.wait_for(made, connect_s)
        except TimeoutError as e:
            raise httpx.ConnectTimeout(type(e).__name__) from e
        except (OSError, ssl.SSLError, UnicodeError) as e:  # refused, DNS, TLS, a bad name
            raise httpx.ConnectError(type(e).__name__) from e
        return connection

    def done(self, key: Key, connection: Connection) -> None:
        """A request's answer was read (or given up): its connection is kept idle if it can
        carry another, and its request slot is let go."""
        self._slots.release()
        if not connection.finish():
            return
        idle = self._idle.setdefault(key, [])
        if self._closed or len(idle) >= self._connections:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        idle.append(connection)

    def close(self) -> None:
        """Close the idle connections, and each busy one as its answer is done."""
        self._closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


async def _in_time() -> None:
    """Returns only while the attempt's deadline (anyio's, around the exchange) has not passed.
    One that passed in the loop turn that handed over a slot or connection (the await already
    done: anyio cancels at the next one; a busy loop runs the woken task before the overdue
    timer) would otherwise be heard only after the write, a billed request for nothing."""
    while anyio.current_effective_deadline() <= anyio.current_time():
        await anyio.lowlevel.checkpoint()  # where the cancellation lands


def _request(start: bytes, headers: list[tuple[str, str]], body: bytes | None) -> bytes:
    fields = "\r\n".join([f"{name}: {value}" for name, value in headers])
    head = start + b"\r\n" + _encoded(fields, len(headers) - 1) if headers else start
    if body is not None:
        head += b"\r\ncontent-length: %d" % len(body)
    head += b"\r\n\r\n"
    return head + body if body else head


def _encoded(text: str, breaks: int = 0) -> bytes:
    """Request lines as bytes (UTF-8, as aiohttp wrote them), ``breaks`` the line breaks that
    separate them: one more would let a key or URL holding a line break write a header of
    its own, and is refused before anything is sent."""
    if text.count("\r") != breaks or text.count("\n") != breaks:
        raise httpx.LocalProtocolError("a line break in a request header")
    try:
        return text.encode()
    except UnicodeEncodeError as e:  # a lone surrogate
        raise httpx.LocalProtocolError("a request header that does not encode") from e


def head_dict(raw: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    """An answer's headers as httpx gives them: names in lower case, repeated ones joined with
    ", ", the whole head decoded as ASCII, else UTF-8, else Latin-1 (httpx's rule; aiohttp's
    own decoding would turn a stray Latin-1 byte into a lone surrogate no UTF-8 writer takes)."""
    for encoding in ("ascii", "utf-8", "latin-1"):
        try:
            pairs = [(k.decode(encoding).lower(), v.decode(encoding)) for k, v in raw]
        except UnicodeDecodeError:
            continue
        break
    merged: dict[str, str] = {}
    for name, value in pairs:
        merged[name] = f"{merged[name]}, {value}" if name in merged else value
    return merged
