"""The network transport: httpx's requests and responses carried over aiohttp's connections
(``aiosession``, imported when first needed), and a provider's API calls over ``wire``'s.

The HTTP layer (``http.py``) keeps speaking httpx, so its rules stay where they are (no
redirects for API calls, one deadline for the whole attempt, the body gate, the one place where
exceptions become ``NoAnswer``) and every fake, the in-process emulator included, is still an
httpx transport. Only the real sockets change: an answer received through httpcore and h11
cost about three times the CPU it cost through aiohttp, and through aiohttp 2.5 times what it
costs through ``wire`` at 512 px, 1.3 times at 1K and 4K (docs/benchmarks.md, "HTTP
stack"). Every exception that leaves here is httpx's, with the meaning ``http.py`` gives it
(``aiosession`` has the table).
"""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import yarl

from pipeline.providers.wire import Wire, WireAnswer, default_tls

if TYPE_CHECKING:
    from pipeline.providers import aiosession


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


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Up to ``connections`` keep-alive connections; idle ones are dropped after
    ``keepalive_s``. Redirects, decompression and timeouts stay httpx's and the caller's."""

    def __init__(self, connections: int, tls: ssl.SSLContext | None, keepalive_s: float) -> None:
        self._connections = connections
        self._tls = tls  # None: the default one, loaded by the first https connection
        self._keepalive_s = keepalive_s
        self._session: aiosession.Session | None = None
        # HTTP(S)_PROXY and NO_PROXY as httpx honoured them, read once (aiohttp's trust_env
        # would read them, and ~/.netrc, on every request, and send netrc credentials).
        self._proxies = urllib.request.getproxies_environment()
        self._bypass: dict[str, bool] = {}  # host -> NO_PROXY names it
        self._urls: dict[str, yarl.URL] = {}  # parsed, by text
        self._wire = Wire(connections, tls, keepalive_s)  # API calls, where it can carry them
        self._wired: dict[str, yarl.URL] = {}  # addresses wire carries calls to, parsed

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        call = Outgoing(
            request.method,
            str(request.url),
            await request.aread(),
            request.headers.multi_items(),  # a list: not httpx's mapping
            request.extensions.get("timeout", {}),
            request.extensions.get("trace"),
        )
        from pipeline.providers import aiosession

        return aiosession.as_httpx(await self._request(call, request), request)

    async def call(self, call: Outgoing) -> aiosession.Answer | httpx.Response:
        """An API call's answer, with no httpx request made for it. A compressed body comes
        back as an httpx response, which decodes it as it is read."""
        from pipeline.providers import aiosession

        return aiosession.answer(await self._request(call, None))

    async def api_call(self, call: Outgoing) -> aiosession.Answer | WireAnswer | httpx.Response:
        """A provider's API call: on ``wire``'s connections (0.4x aiohttp's CPU per 512 px
        answer) unless it needs what only aiohttp does here (a proxy, credentials in the URL,
        a read or pool timeout); a compressed body comes back as an httpx response."""
        parsed = self._wired.get(call.url)
        if parsed is None:
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

    def _aiohttp(self) -> aiosession.Session:
        """aiohttp's session, imported and made on the first request that needs it."""
        if self._session is None:
            from pipeline.providers import aiosession  # ~0.17 s: only when a call needs it

            self._session = aiosession.Session(
                self._connections, self._tls or default_tls(), self._keepalive_s
            )
        return self._session

    async def _request(
        self, call: Outgoing, request: httpx.Request | None
    ) -> aiosession.ClientResponse:
        parsed = self._parsed(call.url)
        return await self._aiohttp().request(call, parsed, self._proxy(parsed), request)

    def _parsed(self, url: str) -> yarl.URL:
        """``url`` parsed, as aiohttp would parse it, once per address: a run sends thousands
        of requests to a handful of addresses."""
        parsed = self._urls.get(url)
        if parsed is None:
            try:
                parsed = yarl.URL(url)
            except ValueError as e:  # aiohttp's InvalidURL, as aiosession translates it
                raise httpx.UnsupportedProtocol("InvalidURL") from e
            if len(self._urls) >= _MAX_URLS:  # batch downloads: each its own address
                self._urls.clear()
            self._urls[url] = parsed
        return parsed

    def _proxy(self, url: yarl.URL) -> str | None:
        proxy = self._proxies.get(url.scheme)
        if proxy is None:
            return None
        try:
            host = url.host or ""
        except UnicodeError as e:  # bad punycode: refused before any connection, as unproxied
            raise httpx.ConnectError("UnicodeError") from e
        if host not in self._bypass:
            self._bypass[host] = bool(urllib.request.proxy_bypass(host))
        return None if self._bypass[host] else proxy

    async def aclose(self) -> None:
        self._wire.close()
        if self._session is not None:
            await self._session.close()
