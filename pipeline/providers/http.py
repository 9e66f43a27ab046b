"""A thin wrapper over an injected ``httpx.AsyncClient``: send one request, get one answer.

This is the one place where httpx exceptions are translated (into ``NoAnswer``: a
``TransportFailure`` and whether the request may have reached the server), and where the API
key is attached. The transport is injected, so the in-process emulator, a real
socket and a test double are all just transports.

API calls never follow a redirect: httpx strips only ``Authorization`` when a redirect leaves
the origin, so a key in ``x-goog-api-key`` or ``?key=`` would travel on to whoever the
Location names. A redirect is returned as ``TransportFailure.REDIRECT`` instead. Image links
(opt-in) are fetched without any credential, and may follow redirects.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import anyio
import httpx

from pipeline.core.config import ApiKey, AuthStyle
from pipeline.core.types import NoAnswer, RawResponse, TransportFailure

T = TypeVar("T")


class GeminiClient:
    """Sends generateContent requests. Never raises for network trouble: it returns it."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        api_key: ApiKey | None,
        auth: AuthStyle = AuthStyle.HEADER,
        body_gate: anyio.CapacityLimiter | None = None,
    ) -> None:
        self._http = http
        self._gate = body_gate or anyio.CapacityLimiter(BODY_READERS)
        self._base = base_url.rstrip("/")
        self._headers = {"content-type": "application/json"}
        self._query = ""
        if api_key is not None:
            if auth is AuthStyle.BEARER:
                self._headers["authorization"] = f"Bearer {api_key.reveal()}"
            elif auth is AuthStyle.QUERY:
                self._query = "?" + urlencode({"key": api_key.reveal()})
            else:
                self._headers["x-goog-api-key"] = api_key.reveal()

    async def generate(
        self, model: str, body: bytes, timeout_s: float, parse: Callable[[RawResponse], T]
    ) -> T | NoAnswer:
        """POST the body and ``parse`` the answer (any status), or say why there was none."""
        # The model id was checked against a strict pattern; encoding it too means no id can
        # ever reach another path (``../``) or another query (``?``).
        url = f"{self._base}/v1beta/models/{quote(model, safe='')}:generateContent{self._query}"
        return await self._send("POST", url, body, timeout_s, parse)

    async def download(self, url: str, timeout_s: float) -> RawResponse | NoAnswer:
        """GET an image a gateway returned as a link: no credential of any kind is sent, and
        the body is read up to ``MAX_DOWNLOAD_BYTES`` (a link can point at anything)."""
        return await self._send("GET", url, None, timeout_s, _as_is, authenticated=False)

    async def _send(
        self,
        method: str,
        url: str,
        body: bytes | None,
        timeout_s: float,
        parse: Callable[[RawResponse], T],
        *,
        authenticated: bool = True,
    ) -> T | NoAnswer:
        headers = self._headers if authenticated else {}
        progress = _Progress()
        try:
            # httpx timeouts bound each socket operation; fail_after bounds the whole attempt,
            # which is what matters when a server trickles a slow body.
            with anyio.fail_after(timeout_s):
                request = self._http.build_request(
                    method, url, content=body, headers=headers, extensions=progress.extensions
                )
                response = await self._http.send(
                    request, stream=True, follow_redirects=not authenticated
                )
                try:
                    if authenticated and response.is_redirect:
                        message = self._redirect_message(response)
                        return NoAnswer(TransportFailure.REDIRECT, message, sent=True)
                    # An answer that has arrived waits in the socket (TCP holds the sender
                    # back) until a reader is free, and is parsed before the reader is let go,
                    # so a few bodies are in memory at a time however many requests are in
                    # flight: 4K answers are ~25 MB each.
                    async with self._gate:
                        # Not response.aread(): that keeps the body on the response, which sits
                        # in a reference cycle with its stream, so multi-megabyte bodies would
                        # live on until the cyclic garbage collector happened to run.
                        limit = None if authenticated else MAX_DOWNLOAD_BYTES
                        content = await _read_body(response, limit)
                        headers = {k.lower(): v for k, v in response.headers.items()}
                        return parse(RawResponse(response.status_code, headers, content))
                finally:
                    await response.aclose()
        except TimeoutError:
            message = f"no answer within {timeout_s:.0f} s"
            return NoAnswer(TransportFailure.TIMEOUT, message, progress.maybe_sent)
        except httpx.TimeoutException as e:
            # ConnectTimeout, ReadTimeout...: only the exception's class, as below.
            sent = progress.maybe_sent and not isinstance(e, _BEFORE_SENDING)
            return NoAnswer(TransportFailure.TIMEOUT, type(e).__name__, sent)
        except (httpx.TransportError, httpx.DecodingError, httpx.TooManyRedirects) as e:
            # Only the exception's class: its text can hold the URL, which can hold a key.
            sent = progress.maybe_sent and not isinstance(e, _BEFORE_SENDING)
            return NoAnswer(TransportFailure.CONNECTION, type(e).__name__, sent)
        except _TooLarge:
            message = f"body over {MAX_DOWNLOAD_BYTES // 10**6} MB"
            return NoAnswer(TransportFailure.CONNECTION, message, sent=True)

    def _redirect_message(self, response: httpx.Response) -> str:
        # Only origins: the Location's path or query may repeat ``?key=``.
        target = _origin(str(response.headers.get("location", ""))) or "an unnamed location"
        return (
            f"the server answered HTTP {response.status_code}, a redirect to {target}; "
            f"API calls do not follow redirects, so the key stays with {_origin(self._base)}: "
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

    @property
    def extensions(self) -> dict[str, Any]:
        return {"trace": self._trace}

    async def _trace(self, name: str, info: dict[str, Any]) -> None:
        self.traced = True
        if name.endswith("send_request_headers.started"):
            self.writing = True

    @property
    def maybe_sent(self) -> bool:
        return self.writing or not self.traced


class _TooLarge(Exception):
    """A linked image's body passed ``MAX_DOWNLOAD_BYTES``."""


async def _read_body(response: httpx.Response, limit: int | None) -> bytes:
    """The whole body, or ``_TooLarge`` once it passes ``limit`` bytes."""
    if limit is None:  # an API answer: its size is the API's business (4K is ~25 MB)
        return b"".join([chunk async for chunk in response.aiter_bytes()])
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if total > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _origin(url: str) -> str | None:
    """``scheme://host[:port]`` of a URL, without user info, path or query; None if none."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not parts.scheme or not host:
        return None
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def _as_is(response: RawResponse) -> RawResponse:
    return response


# A linked image is at most this big (a 4K PNG is ~25 MB); a link can point at anything.
MAX_DOWNLOAD_BYTES = 64 * 10**6


# httpcore's pool bookkeeping costs O(connections^2) per request (it counts idle connections
# inside a loop over connections): at 64 connections that was 70% of the client's CPU. Small
# pools, one per group of workers, keep it negligible.
WORKERS_PER_POOL = 8
# Bodies read at once across the whole pool: parsing them is CPU-bound, so more readers would
# only hold more multi-megabyte bodies in memory without finishing any sooner.
BODY_READERS = 6


def new_http_client(
    transport: httpx.AsyncBaseTransport | None,
    connections: int,
    tls: ssl.SSLContext | None = None,
) -> httpx.AsyncClient:
    """An httpx client with ``connections`` connections and no global timeout."""
    # Drop idle connections before a server does (uvicorn after 5 s; proxies vary): reusing
    # one the server has closed fails with a read error that cost a retry and an attempt.
    limits = httpx.Limits(
        max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=4.0
    )
    return httpx.AsyncClient(
        transport=transport,
        verify=tls or True,
        limits=limits,
        timeout=httpx.Timeout(None, connect=30.0),
        follow_redirects=False,  # see the module docstring: a key must not follow a redirect
    )


class ClientPool:
    """One ``GeminiClient`` per group of ``WORKERS_PER_POOL`` workers, each with its own small
    connection pool: a worker has one request in flight, so no request ever waits for a
    connection."""

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None,
        base_url: str,
        api_key: ApiKey | None,
        auth: AuthStyle,
        workers: int,
    ) -> None:
        pools = max(1, math.ceil(workers / WORKERS_PER_POOL))
        gate = anyio.CapacityLimiter(BODY_READERS)
        # One TLS context for all: loading the CA bundle costs ~50 ms per client.
        tls = httpx.create_ssl_context()
        self._http = [new_http_client(transport, WORKERS_PER_POOL, tls) for _ in range(pools)]
        self._clients = [GeminiClient(h, base_url, api_key, auth, gate) for h in self._http]

    def for_worker(self, index: int) -> GeminiClient:
        # A pool made for fewer workers than ask (a caller's own) shares its clients round.
        return self._clients[(index // WORKERS_PER_POOL) % len(self._clients)]

    async def __aenter__(self) -> ClientPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for http in self._http:
            await http.aclose()
