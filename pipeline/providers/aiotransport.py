"""The network transport: httpx's requests and responses carried over aiohttp's connections
and its C-accelerated HTTP/1.1 parser.

The HTTP layer (``http.py``) keeps speaking httpx, so its rules stay where they are (no
redirects for API calls, one deadline for the whole attempt, the body gate, the one place where
exceptions become ``NoAnswer``) and every fake, the in-process emulator included, is still an
httpx transport. Only the real sockets change: an answer received through httpcore and h11
cost about three times the CPU it costs here, and a whole run 0.7-0.9x the CPU per image
(docs/benchmarks.md, "HTTP stack").

This module translates aiohttp's exceptions into the httpx exceptions that say the same thing
about the request, because ``http.py`` decides from their class whether a request may have
reached the server (and so may have been billed)::

    aiohttp                                   httpx                  sent?
    ClientProxyConnectionError                ProxyError             no
    ClientConnectorError (refused, DNS, TLS)  ConnectError           no
    ConnectionTimeoutError (pool, connect)    ConnectTimeout         no
    InvalidURL                                UnsupportedProtocol    no
    SocketTimeoutError, ServerTimeoutError    ReadTimeout            yes
    ServerDisconnectedError, ClientPayloadError,
      ClientResponseError (a malformed answer) RemoteProtocolError   yes
    any other ClientError, ConnectionError    ReadError              yes

(``httpx-aiohttp``'s transport maps ``ServerDisconnectedError`` to ``ConnectTimeout``: a server
that read the request and hung up would count as never sent.) The request's ``trace``
extension gets httpcore's event names: a connection taken from the pool or just made counts as
the request's headers starting to go out, as in ``http._Progress``.
"""

from __future__ import annotations

import contextlib
import functools
import ssl
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import Any

import aiohttp
import httpx

# Order matters: the first class an exception is an instance of decides.
_TRANSLATION: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ClientProxyConnectionError, httpx.ProxyError),
    (aiohttp.ClientHttpProxyError, httpx.ProxyError),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
    (aiohttp.ClientError, httpx.ReadError),
    (ConnectionError, httpx.ReadError),
)


@contextlib.contextmanager
def _translated(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except (aiohttp.ClientError, ConnectionError) as e:
        for origin, translation in _TRANSLATION:
            if isinstance(e, origin):
                # Only the class: an aiohttp message can hold the URL, which can hold a key.
                raise translation(type(e).__name__, request=request) from e
        raise  # pragma: no cover - ClientError and ConnectionError are both in the table


# The request's ``trace`` extension, for the connector below: a context variable rather than
# aiohttp's ``TraceConfig``, whose hooks cost ~3% of a run's CPU (an attrs object and a
# coroutine per event, on every request) to say what one overridden method says here.
_TRACE: ContextVar[Callable[[str, dict[str, Any]], Awaitable[None]] | None] = ContextVar(
    "nanobatch_trace", default=None
)


class _Connector(aiohttp.TCPConnector):
    """aiohttp's connector, reporting when a request has its connection (from the pool or just
    made): nothing awaits between that and writing the request's headers on it."""

    async def connect(
        self,
        req: aiohttp.ClientRequest,
        traces: list[Any],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 (aiohttp's signature)
    ) -> aiohttp.connector.Connection:
        connection = await super().connect(req, traces, timeout)
        if (trace := _TRACE.get()) is not None:
            await trace("http11.send_request_headers.started", {})
        return connection


class _Body(httpx.AsyncByteStream):
    """An aiohttp answer's body as httpx reads it: whatever has arrived, per chunk."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _translated(self._request):
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        # Back to the pool when the body was read whole, closed otherwise (aiohttp decides).
        self._response.release()


@functools.cache
def default_tls() -> ssl.SSLContext:
    """httpx's TLS defaults and CA bundle, loaded once per process (20-50 ms each time): one
    context serves every client and connection."""
    return httpx.create_ssl_context()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Up to ``connections`` keep-alive connections; idle ones are dropped after
    ``keepalive_s``. Redirects, decompression and timeouts stay httpx's and the caller's."""

    def __init__(self, connections: int, tls: ssl.SSLContext, keepalive_s: float) -> None:
        self._connections = connections
        self._tls = tls
        self._keepalive_s = keepalive_s
        self._session: aiohttp.ClientSession | None = None
        # HTTP(S)_PROXY and NO_PROXY as httpx honoured them, read once (aiohttp's trust_env
        # would read them, and ~/.netrc, on every request, and send netrc credentials).
        self._proxies = urllib.request.getproxies_environment()
        self._bypass: dict[str, bool] = {}  # host -> NO_PROXY names it

    def _open(self) -> aiohttp.ClientSession:
        # Made on the first request: aiohttp binds a session to the running event loop.
        connector = _Connector(
            limit=self._connections,
            limit_per_host=0,
            keepalive_timeout=self._keepalive_s,
            ssl=self._tls,
        )
        return aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None),
            auto_decompress=False,  # httpx decodes the content encoding it asked for
            cookie_jar=aiohttp.DummyCookieJar(),  # httpx's client keeps the cookies
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            self._session = self._open()
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        body = await request.aread()
        trace = request.extensions.get("trace")
        if trace is not None:
            await trace("aiohttp.request.started", {})
        token = _TRACE.set(trace)
        try:
            with _translated(request):
                response = await self._session.request(
                    request.method,
                    str(request.url),
                    data=body or None,
                    headers=request.headers.multi_items(),  # a list: not httpx's mapping
                    allow_redirects=False,  # httpx follows them, where the caller allows it
                    timeout=aiohttp.ClientTimeout(
                        total=None,
                        connect=timeouts.get("pool"),
                        sock_connect=timeouts.get("connect"),
                        sock_read=timeouts.get("read"),
                    ),
                    proxy=self._proxy(request.url),
                )
        finally:
            _TRACE.reset(token)
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_Body(response, request),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    def _proxy(self, url: httpx.URL) -> str | None:
        proxy = self._proxies.get(url.scheme)
        if proxy is None:
            return None
        if url.host not in self._bypass:
            self._bypass[url.host] = bool(urllib.request.proxy_bypass(url.host))
        return None if self._bypass[url.host] else proxy

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
