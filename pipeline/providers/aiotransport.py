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
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import yarl

from pipeline.providers.wire import Wire, WireAnswer, head_dict

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
def _translated(request: httpx.Request | None) -> Iterator[None]:
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


class _Body(httpx.AsyncByteStream):
    """An aiohttp answer's body as httpx reads it: whatever has arrived, per chunk."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request | None) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _translated(self._request):
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        # Back to the pool when the body was read whole, closed otherwise (aiohttp decides).
        self._response.release()


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A request as aiohttp is given it: ``timeouts`` and ``trace`` as httpx's ``timeout`` and
    ``trace`` extensions hold them (``trace`` hears when the request has its connection)."""

    method: str
    url: str
    body: bytes | None
    headers: list[tuple[str, str]]
    timeouts: dict[str, Any]
    trace: Callable[[str, dict[str, Any]], Awaitable[None]] | None


_MAX_URLS = 64  # parsed URLs a transport keeps
_REDIRECTS = frozenset((301, 302, 303, 307, 308))


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
        return self.status_code in _REDIRECTS and "location" in self.headers

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        with _translated(None):
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        self._response.release()  # as ``_Body.aclose``


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
        self._urls: dict[str, yarl.URL] = {}  # parsed, by text
        self._wire = Wire(connections, tls, keepalive_s)  # API calls, where it can carry them
        self._wired: dict[str, yarl.URL] = {}  # addresses wire carries calls to, parsed

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
        call = Outgoing(
            request.method,
            str(request.url),
            await request.aread(),
            request.headers.multi_items(),  # a list: not httpx's mapping
            request.extensions.get("timeout", {}),
            request.extensions.get("trace"),
        )
        return self._response(await self._request(call, request), request)

    @staticmethod
    def _response(
        response: aiohttp.ClientResponse, request: httpx.Request | None
    ) -> httpx.Response:
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_Body(response, request),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def call(self, call: Outgoing) -> Answer | httpx.Response:
        """An API call's answer, with no httpx request made for it. A compressed body comes
        back as an httpx response, which decodes it as it is read."""
        response = await self._request(call, None)
        head = head_dict(response.raw_headers)
        if head.get("content-encoding", "identity").strip().lower() != "identity":
            return self._response(response, None)
        return Answer(response, head)

    async def api_call(self, call: Outgoing) -> Answer | WireAnswer | httpx.Response:
        """A provider's API call: on ``wire``'s connections (~a quarter of aiohttp's CPU per
        answer) unless it needs what only aiohttp does here (a proxy, credentials in the URL,
        a read or pool timeout); a compressed body comes back as an httpx response."""
        parsed = self._wired.get(call.url)
        if parsed is None:
            with _translated(None):
                parsed = self._parsed(call.url)
            if self._proxy(parsed) is not None or parsed.raw_user is not None:
                return await self.call(call)
            if len(self._wired) >= _MAX_URLS:
                self._wired.clear()
            self._wired[call.url] = parsed  # the environment's proxies are read once
        timeouts = call.timeouts
        if timeouts.get("read") is not None or timeouts.get("pool") is not None:
            return await self.call(call)
        answer = await self._wire.call(
            call.method,
            call.url,
            parsed,
            call.body,
            call.headers,
            connect_s=timeouts.get("connect"),
            trace=call.trace,
        )
        if answer.headers.get("content-encoding", "identity").strip().lower() != "identity":
            return answer.decoded()
        return answer

    async def _request(
        self, call: Outgoing, request: httpx.Request | None
    ) -> aiohttp.ClientResponse:
        if self._session is None:
            self._session = self._open()
        if call.trace is not None:
            await call.trace("aiohttp.request.started", {})
        token = _TRACE.set(call.trace)
        try:
            with _translated(request):
                parsed = self._parsed(call.url)
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
                    proxy=self._proxy(parsed),
                )
        finally:
            _TRACE.reset(token)

    def _parsed(self, url: str) -> yarl.URL:
        """``url`` parsed, as aiohttp would parse it, once per address: a run sends thousands
        of requests to a handful of addresses."""
        parsed = self._urls.get(url)
        if parsed is None:
            try:
                parsed = yarl.URL(url)
            except ValueError as e:  # as aiohttp's own parse says it
                raise aiohttp.InvalidURL(url) from e
            if len(self._urls) >= _MAX_URLS:  # batch downloads: each its own address
                self._urls.clear()
            self._urls[url] = parsed
        return parsed

    def _proxy(self, url: yarl.URL) -> str | None:
        proxy = self._proxies.get(url.scheme)
        if proxy is None:
            return None
        host = url.host or ""
        if host not in self._bypass:
            self._bypass[host] = bool(urllib.request.proxy_bypass(host))
        return None if self._bypass[host] else proxy

    async def aclose(self) -> None:
        self._wire.close()
        if self._session is not None:
            await self._session.close()
