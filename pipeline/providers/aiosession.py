"""aiohttp's side of the network transport (``aiotransport``), imported only when a request
needs it: a proxy, an upload or download, a token endpoint, an image link. A provider's API
calls go out on ``wire`` and never load aiohttp (~0.17 s of a run's start-up: its connector
builds two TLS contexts at import).

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
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import aiohttp
import httpx
import yarl

from pipeline.providers.wire import REDIRECTS, head_dict

if TYPE_CHECKING:
    from pipeline.providers.aiotransport import Outgoing

ClientResponse = aiohttp.ClientResponse

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
    # A host name IDNA cannot encode (an empty or over-long label): the resolver refuses it
    # before any connection, so nothing was sent.
    (UnicodeError, httpx.ConnectError),
)


@contextlib.contextmanager
def translated(request: httpx.Request | None) -> Iterator[None]:
    try:
        yield
    except (aiohttp.ClientError, ConnectionError, UnicodeError) as e:
        for origin, translation in _TRANSLATION:
            if isinstance(e, origin):
                # Only the class: an aiohttp message can hold the URL, which can hold a key.
                raise translation(type(e).__name__, request=request) from e
        raise  # pragma: no cover - every class caught is in the table


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


class Body(httpx.AsyncByteStream):
    """An aiohttp answer's body as httpx reads it: whatever has arrived, per chunk."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request | None) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with translated(self._request):
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        # Back to the pool when the body was read whole, closed otherwise (aiohttp decides).
        self._response.release()


class Answer:
    """An API call's answer as the HTTP layer reads it (``bodies.Arrived``), without httpx's
    request, header and response objects around aiohttp's: they cost ~0.1 ms of a 512 px
    answer's ~0.35 ms on the wire (docs/benchmarks.md). Headers as httpx gives them: names in
    lower case, repeated ones joined with ", ". Only for a body sent as it is: a compressed
    one is read through httpx's response, which decodes it."""

    __slots__ = ("_response", "headers", "status_code")

    def __init__(self, response: aiohttp.ClientResponse, headers: dict[str, str]) -> None:
        self._response = response
        self.status_code = response.status
        self.headers = headers

    @property
    def is_redirect(self) -> bool:
        return self.status_code in REDIRECTS and "location" in self.headers

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        with translated(None):
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        self._response.release()  # as ``Body.aclose``


class Session:
    """An aiohttp session (made on the first request: aiohttp binds one to the running event
    loop), sending requests as ``aiotransport`` hands them over."""

    def __init__(self, connections: int, tls: ssl.SSLContext, keepalive_s: float) -> None:
        connector = _Connector(
            limit=connections,
            limit_per_host=0,
            keepalive_timeout=keepalive_s,
            ssl=tls,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None),
            auto_decompress=False,  # httpx decodes the content encoding it asked for
            cookie_jar=aiohttp.DummyCookieJar(),  # httpx's client keeps the cookies
        )

    async def request(
        self, call: Outgoing, parsed: yarl.URL, proxy: str | None, request: httpx.Request | None
    ) -> aiohttp.ClientResponse:
        """``call``'s answer, its head in; ``parsed`` is its URL, ``request`` httpx's (if any)."""
        if call.trace is not None:
            await call.trace("aiohttp.request.started", {})
        token = _TRACE.set(call.trace)
        try:
            with translated(request):
                return await self._session.request(
                    call.method,
                    parsed,
                    data=call.body or None,
                    headers=call.headers,
                    allow_redirects=False,  # httpx follows them, where the caller allows it
                    timeout=aiohttp.ClientTimeout(
                        total=None,
                        connect=call.timeouts.get("pool"),
                        sock_connect=call.timeouts.get("connect"),
                        sock_read=call.timeouts.get("read"),
                    ),
                    proxy=proxy,
                )
        finally:
            _TRACE.reset(token)

    async def close(self) -> None:
        await self._session.close()


def as_httpx(response: aiohttp.ClientResponse, request: httpx.Request | None) -> httpx.Response:
    """An aiohttp answer as httpx's response (which decodes a compressed body)."""
    return httpx.Response(
        status_code=response.status,
        headers=response.raw_headers,
        stream=Body(response, request),
        request=request,
        extensions={"http_version": b"HTTP/1.1"},
    )


def answer(response: aiohttp.ClientResponse) -> Answer | httpx.Response:
    """An API call's answer, with no httpx request made for it. A compressed body comes back
    as an httpx response, which decodes it as it is read."""
    head = head_dict(response.raw_headers)
    if head.get("content-encoding", "identity").strip().lower() != "identity":
        return as_httpx(response, None)
    return Answer(response, head)
