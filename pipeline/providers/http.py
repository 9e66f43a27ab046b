"""The HTTP layer: send one prepared request with its credentials, feed the answer to the
provider's reader as it arrives. Knows no protocol: the URL and body come from the provider,
the credentials from its ``Auth``.

This is the one place where httpx exceptions are translated: into ``NoAnswer``, a
``TransportFailure`` and whether the request may have reached the server (never sent, or sent
with no usable answer); an answer read whole is the reader's ``Outcome``. The transport is
injected, so the in-process emulator, a real socket and a test double are all just transports;
real sockets are aiohttp's (``aiotransport``, which turns aiohttp's exceptions into httpx's).

API calls never follow a redirect: httpx strips only ``Authorization`` when a redirect leaves
the origin, so a key in ``x-goog-api-key`` or ``?key=`` would travel on to whoever the
Location names. A redirect is returned as ``TransportFailure.REDIRECT`` instead. Image links
(opt-in) are fetched without any credential, and may follow redirects.
"""

from __future__ import annotations

import functools
import math
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import httpx

from pipeline.core.deadline import FailAfter
from pipeline.core.slots import Slots
from pipeline.core.types import NoAnswer, Outcome, RawResponse, TransportFailure
from pipeline.providers.aiotransport import AiohttpTransport, Outgoing
from pipeline.providers.auth import Credentials
from pipeline.providers.base import AnswerReader, PreparedRequest
from pipeline.providers.bodies import (
    MAX_DOWNLOAD_BYTES,
    Arrived,
    BodySink,
    TooLarge,
    collect,
    feed_reader,
    to_sink,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call:
    """One request as it goes on the wire, its credentials already in the URL, headers or body;
    ``timeout_s`` bounds the whole attempt."""

    method: str
    url: str
    body: bytes | None
    headers: dict[str, str]
    timeout_s: float


class HttpClient:
    """Sends prepared requests. Never raises for network trouble: it returns it."""

    def __init__(self, http: httpx.AsyncClient, body_gate: Slots | None = None):
        self._http = http
        self._gate = body_gate or Slots(BODY_READERS)
        # Parsed URLs by text: a run sends thousands of requests to a handful of addresses, and
        # httpx parsed each one again (~1.5% of a 512 px run's CPU).
        self._urls: dict[str, httpx.URL] = {}
        # What ``build_request`` would merge into every request, merged once: the client's
        # default headers (a call's own win, names compared without case) and its timeouts.
        self._defaults = [(k.lower(), v) for k, v in http.headers.items()]
        self._timeout = http.timeout.as_dict()
        # The client's transport, for API calls (``_send``): httpx keeps it private, so a
        # version that moved it fails here, at construction, not on a request.
        self._transport: httpx.AsyncBaseTransport = http._transport
        # Real sockets: API calls skip httpx's objects altogether (``AiohttpTransport.call``).
        self._aiohttp = self._transport if type(self._transport) is AiohttpTransport else None

    async def send(
        self, request: PreparedRequest, credentials: Credentials, reader: AnswerReader
    ) -> Outcome | NoAnswer:
        """Send ``request`` with ``credentials``; the ``reader``'s outcome for the answer (any
        status), or why there was none."""
        url = request.url
        if credentials.params:
            url += ("&" if "?" in url else "?") + urlencode(credentials.params)
        headers = {**request.headers, **credentials.headers}
        read = functools.partial(feed_reader, reader=reader)
        method, body, timeout_s = request.method, request.body, request.timeout_s
        call = Call(method, url, body, headers, timeout_s)
        return await self._exchange(call, read=read, api=True)

    async def fetch(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str],
        timeout_s: float,
    ) -> RawResponse | NoAnswer:
        """A request outside the API's protocol (an OAuth token endpoint, a metadata server),
        its answer whole: whatever credential it needs is in ``headers`` or ``body``; redirects
        are not followed."""
        return await self._exchange(Call(method, url, body, headers, timeout_s), read=collect)

    async def download(self, url: str, timeout_s: float) -> RawResponse | NoAnswer:
        """GET an image a gateway returned as a link: no credential of any kind is sent, and
        the body is read up to ``MAX_DOWNLOAD_BYTES`` (a link can point at anything)."""
        return await self._exchange(Call("GET", url, None, {}, timeout_s), read=collect, link=True)

    async def stream(
        self,
        url: str,
        headers: dict[str, str],
        timeout_s: float,
        sink: BodySink,
    ) -> RawResponse | NoAnswer:
        """GET a file that may be gigabytes (a batch job's results): a 2xx body goes to
        ``sink`` piece by piece as it arrives and the answer comes back without it; any other
        answer comes back whole (bounded). ``sink.start`` hears a 2xx's status and headers
        before its first piece (a 200 to a Range request restarts the file). A redirect is
        returned as it is, not followed: the caller decides which credentials the next address
        may see."""
        read = functools.partial(to_sink, sink=sink)
        call = Call("GET", url, None, headers, timeout_s)
        return await self._exchange(call, read=read, hops=True)

    def _headers(self, own: dict[str, str]) -> list[tuple[str, str]]:
        names = {name.lower() for name in own}
        return [*((k, v) for k, v in self._defaults if k not in names), *own.items()]

    async def _send(self, call: Call, progress: _Progress, link: bool, api: bool) -> Arrived:
        """The answer's head. An API call goes straight to the transport: httpx's client
        would only add layers it never uses here (auth, cookies, hooks, a redirect loop that
        is not to be followed: ~0.1 ms of a 512 px answer's ~0.4 ms, scripts/bench_receive.py);
        on aiohttp's sockets, with no httpx request or response at all, and a provider's API
        call (``api``) on ``wire``'s leaner ones. An image link's download may follow
        redirects, which the client does."""
        headers = self._headers(call.headers)
        if self._aiohttp is not None and not link:
            outgoing = Outgoing(
                call.method, call.url, call.body, headers, self._timeout, progress.trace
            )
            if api:
                return await self._aiohttp.api_call(outgoing)
            return await self._aiohttp.call(outgoing)
        try:
            request = httpx.Request(
                call.method,
                self._url(call.url),
                content=call.body,
                headers=headers,
                extensions={"timeout": self._timeout, "trace": progress.trace},
            )
        except UnicodeError as e:  # a host IDNA refuses (bad punycode): nothing was sent
            raise httpx.InvalidURL(type(e).__name__) from e
        if link:
            return await self._http.send(request, stream=True, follow_redirects=True)
        response = await self._transport.handle_async_request(request)
        response.request = request  # as the client sets it (a test double's answers lack it)
        return response

    def _url(self, text: str) -> httpx.URL:
        url = self._urls.get(text)
        if url is None:
            if len(self._urls) >= MAX_URLS:  # batch downloads and links: each its own address
                self._urls.clear()
            url = self._urls[text] = httpx.URL(text)
        return url

    async def _exchange(
        self,
        call: Call,
        *,
        read: Callable[[Arrived], Awaitable[T]],
        link: bool = False,
        hops: bool = False,
        api: bool = False,
    ) -> T | NoAnswer:
        """The one place where transport exceptions become ``NoAnswer`` (never sent, or sent
        with no usable answer); an answer read whole is what ``read`` makes of it. ``link``:
        an image link's download, which may follow redirects (it carries no credential);
        ``hops``: a redirect is an answer for ``read``, the caller follows it itself;
        ``api``: a provider's API call (``send``)."""
        progress = _Progress()
        try:
            # httpx timeouts bound each socket operation; FailAfter bounds the whole attempt,
            # which is what matters when a server trickles a slow body.
            with FailAfter(call.timeout_s):
                response = await self._send(call, progress, link, api)
                try:
                    if not link and not hops and response.is_redirect:
                        message = _redirect_message(response, call.url)
                        return NoAnswer(TransportFailure.REDIRECT, message, sent=True)
                    # An answer that has arrived waits in the socket (TCP holds the sender
                    # back) until a reader is free, and is parsed before the reader is let go,
                    # so a few bodies are in memory at a time however many requests are in
                    # flight: 4K answers are ~25 MB each.
                    await self._gate.acquire()
                    try:
                        return await read(response)
                    finally:
                        self._gate.release()
                finally:
                    await response.aclose()
        except TimeoutError:
            return timed_out(call, progress.maybe_sent)
        except httpx.TimeoutException as e:  # ConnectTimeout, ReadTimeout...
            return broke(TransportFailure.TIMEOUT, e, progress.maybe_sent, _BEFORE_SENDING)
        except (httpx.TransportError, httpx.DecodingError, httpx.TooManyRedirects) as e:
            return broke(TransportFailure.CONNECTION, e, progress.maybe_sent, _BEFORE_SENDING)
        except httpx.InvalidURL as e:  # a link a gateway answered with can be anything
            return NoAnswer(TransportFailure.CONNECTION, type(e).__name__, sent=False)
        except TooLarge:
            message = f"body over {MAX_DOWNLOAD_BYTES // 10**6} MB"
            return NoAnswer(TransportFailure.CONNECTION, message, sent=True)


def timed_out(call: Call, maybe_sent: bool) -> NoAnswer:
    """No answer within the attempt's deadline."""
    message = f"no answer within {call.timeout_s:.0f} s"
    return NoAnswer(TransportFailure.TIMEOUT, message, maybe_sent)


def broke(
    failure: TransportFailure,
    error: Exception,
    maybe_sent: bool,
    before_sending: tuple[type[Exception], ...],
) -> NoAnswer:
    """An exchange that broke with ``error``: sent unless it broke before a byte went out.
    Only the exception's class is kept: its text can hold the URL, which can hold a key."""
    sent = maybe_sent and not isinstance(error, before_sending)
    return NoAnswer(failure, type(error).__name__, sent)


def _redirect_message(response: Arrived, url: str) -> str:
    # Only origins: the Location's path or query may repeat ``?key=``.
    target = origin(str(response.headers.get("location", ""))) or "an unnamed location"
    return (
        f"the server answered HTTP {response.status_code}, a redirect to {target}; "
        f"API calls do not follow redirects, so the key stays with {origin(url)}: "
        "set --base-url to the address that answers"
    )


# Failures that happen before a byte of the request is written: the server never saw it.
_BEFORE_SENDING = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
)


class _Progress:
    """How far one request got, from httpcore's trace events.

    A request counts as sent from the moment its headers start going out. Transports that
    report no events (the in-process emulator, a test double) are taken to have sent it: when
    in doubt the money rule must assume the server may have billed.
    """

    __slots__ = ("traced", "writing")

    def __init__(self) -> None:
        self.traced = False  # the transport reported at least one event
        self.writing = False  # the request's headers started going out

    async def trace(self, name: str, info: dict[str, Any]) -> None:
        """httpcore's ``trace`` extension."""
        self.traced = True
        if name.endswith("send_request_headers.started"):
            self.writing = True

    @property
    def maybe_sent(self) -> bool:
        return self.writing or not self.traced


def origin(url: str) -> str | None:
    """``scheme://host[:port]`` of a URL, without user info, path or query; None if none."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not parts.scheme or not host:
        return None
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


# Idle connections are dropped after this long: before a server drops them (uvicorn after 5 s;
# proxies vary), since reusing one the server has closed fails with a read error that costs a
# retry and an attempt.
KEEPALIVE_S = 4.0


# httpcore's pool bookkeeping costs O(connections^2) per request (it counts idle connections
# inside a loop over connections): at 64 connections that was 70% of the client's CPU. Small
# pools, one per group of workers, kept it negligible; aiohttp's connector has no such cost,
# and the split costs it nothing.
WORKERS_PER_POOL = 8
# Bodies read at once across the whole pool: parsing them is CPU-bound, so more readers would
# only hold more multi-megabyte bodies in memory without finishing any sooner.
BODY_READERS = 6
MAX_URLS = 64  # parsed URLs a client keeps


def new_http_client(
    transport: httpx.AsyncBaseTransport | None,
    connections: int,
    tls: ssl.SSLContext | None = None,
) -> httpx.AsyncClient:
    """An httpx client with no global timeout; on the network (no ``transport``), over
    ``aiotransport``'s connections, at most ``connections`` of them (httpx's own transport
    cost several times the CPU per answer received, docs/benchmarks.md); ``tls`` None: the
    default context, loaded by the first https connection."""
    if transport is None:
        transport = AiohttpTransport(connections, tls, KEEPALIVE_S)
    client = httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(None, connect=30.0),
        follow_redirects=False,  # see the module docstring: a key must not follow a redirect
    )
    client._cookies = _NoCookies()  # the property's setter would wrap it in a plain Cookies
    return client


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing. No API this client talks to needs cookies, and none set
    by one answer should ride along on a later request; httpx's jar also parsed every answer's
    headers through ``urllib``'s request objects, ~2% of a run's CPU at 512 px."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class ClientPool:
    """One ``HttpClient`` per group of ``WORKERS_PER_POOL`` workers, each with its own small
    connection pool: a worker has one request in flight, so no request ever waits for a
    connection.

    ``transport`` is httpx's: None for the network, or the in-process emulator's.
    """

    def __init__(self, transport: httpx.AsyncBaseTransport | None, workers: int) -> None:
        pools = max(1, math.ceil(workers / WORKERS_PER_POOL))
        gate = Slots(BODY_READERS)
        self._http = [new_http_client(transport, WORKERS_PER_POOL) for _ in range(pools)]
        self._clients = [HttpClient(h, gate) for h in self._http]

    def for_worker(self, index: int) -> HttpClient:
        # A pool made for fewer workers than ask (a caller's own) shares its clients round.
        return self._clients[(index // WORKERS_PER_POOL) % len(self._clients)]

    async def __aenter__(self) -> ClientPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for http in self._http:
            await http.aclose()
