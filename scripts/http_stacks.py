"""The HTTP stacks issue 16 weighs, each behind the HTTP layer's seam (``ClientPool``), so that
``scripts/bench_http.py`` can run the same ``nanobatch run`` on each, side by side.

    python scripts/http_stacks.py STACK run MANIFEST --out DIR ...   # nanobatch on STACK

- ``httpx``: httpx 0.28 on its own transport (httpcore, h11).
- ``httpx2``: httpx's maintained continuation (same API, module ``httpx2``), put in place of
  ``httpx`` before the pipeline is imported.
- ``httpx-aiohttp``: httpx's client on ``httpx_aiohttp.AiohttpTransport`` (aiohttp's sockets
  and C parser under httpx's request and response objects).
- ``aiotransport``: the default, what users get: httpx's client on
  ``pipeline.providers.aiotransport``, whose API calls (``HttpClient.send``) go out on
  ``wire`` (asyncio's sockets, llhttp) and everything else on aiohttp's sockets, with the
  project's own exception translation and trace events.
- ``aiohttp``: aiohttp directly, a client with ``HttpClient``'s methods and rules (no
  redirects for API calls, the whole attempt under one deadline, the body fed to the reader as
  it arrives, "sent" from aiohttp's trace of the request headers).

The last two need ``aiohttp`` and ``httpx-aiohttp``, which are not the project's dependencies:
the script says so and exits 2 when they are missing.
"""

from __future__ import annotations

import importlib
import math
import sys
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any, TypeVar

STACKS = ("httpx", "httpx2", "httpx-aiohttp", "aiohttp", "aiotransport")
T = TypeVar("T")


def _network(make: Callable[[int, Any], Any]) -> None:
    """Make the network's transport (no in-process one given) with ``make(connections, tls)``."""
    from pipeline.providers import http

    original = http.new_http_client

    def new_http_client(transport: Any, connections: int, tls: Any = None) -> Any:
        return original(transport or make(connections, tls), connections, tls)

    vars(http)["new_http_client"] = new_http_client


def _use_httpx() -> None:
    """httpx's own transport (httpcore, h11), whatever the default is."""
    import httpx

    def make(connections: int, tls: Any) -> httpx.AsyncBaseTransport:
        limits = httpx.Limits(max_connections=connections, keepalive_expiry=4.0)
        return httpx.AsyncHTTPTransport(verify=tls or True, limits=limits)

    _network(make)


def _use_httpx2() -> None:
    # Every ``import httpx`` below (the pipeline's, the emulator transport's) gets httpx2.
    sys.modules["httpx"] = importlib.import_module("httpx2")
    _use_httpx()


def _use_httpx_aiohttp() -> None:
    import httpx
    import httpx_aiohttp

    def make(connections: int, tls: Any) -> httpx.AsyncBaseTransport:
        limits = httpx.Limits(max_connections=connections, keepalive_expiry=4.0)
        return httpx_aiohttp.AiohttpTransport(verify=tls or True, limits=limits)

    _network(make)


def _use_aiotransport() -> None:
    import httpx

    from pipeline.providers.aiotransport import AiohttpTransport

    def make(connections: int, tls: Any) -> httpx.AsyncBaseTransport:
        return AiohttpTransport(connections, tls or httpx.create_ssl_context(), keepalive_s=4.0)

    _network(make)


def _use_aiohttp() -> None:
    from pipeline.run import scheduler

    vars(scheduler)["ClientPool"] = _aiohttp_pool()


class OneClient:
    """``ClientPool``'s surface over one client (``_client``, made by the subclass) that every
    worker shares; ``close`` ends what it runs on."""

    _client: Any

    def for_worker(self, index: int) -> Any:
        return self._client

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        raise NotImplementedError


def _aiohttp_pool() -> type:
    """``ClientPool`` and ``HttpClient`` on aiohttp, built here so that importing this module
    needs no aiohttp."""
    import aiohttp
    import anyio

    from pipeline.core.slots import Slots
    from pipeline.core.types import NoAnswer, TransportFailure
    from pipeline.providers import http
    from pipeline.providers.bodies import TooLarge

    class Progress:
        """How far one request got, from aiohttp's trace (``http._Progress``'s rule)."""

        __slots__ = ("traced", "writing")

        def __init__(self) -> None:
            self.traced = False
            self.writing = False

        @property
        def maybe_sent(self) -> bool:
            return self.writing or not self.traced

    async def on_start(_s: object, ctx: SimpleNamespace, _p: object) -> None:
        ctx.trace_request_ctx.traced = True

    async def on_headers(_s: object, ctx: SimpleNamespace, _p: object) -> None:
        ctx.trace_request_ctx.writing = True

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    trace.on_request_headers_sent.append(on_headers)

    class Response:
        """What ``bodies.feed_reader``/``collect`` use of a response: status, headers, chunks."""

        def __init__(self, response: aiohttp.ClientResponse) -> None:
            self.status_code = response.status
            self.headers = response.headers
            self._response = response

        def aiter_bytes(self) -> Any:
            return self._response.content.iter_any()

    # Failures before a byte of the request is written.
    before_sending = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)

    class AiohttpClient:
        def __init__(self, session: aiohttp.ClientSession, gate: Slots) -> None:
            self._session = session
            self._gate = gate

        send = http.HttpClient.send
        fetch = http.HttpClient.fetch
        download = http.HttpClient.download

        async def _exchange(
            self,
            call: http.Call,
            *,
            read: Callable[[Any], Awaitable[T]],
            link: bool = False,
            api: bool = False,  # HttpClient.send's: aiohttp carries every call here
        ) -> T | NoAnswer:
            progress = Progress()
            try:
                with anyio.fail_after(call.timeout_s):
                    async with self._session.request(
                        call.method,
                        call.url,
                        data=call.body,
                        headers=call.headers,
                        allow_redirects=link,
                        trace_request_ctx=progress,
                    ) as response:
                        if (
                            not link
                            and 300 <= response.status < 400
                            and "location" in response.headers
                        ):
                            message = f"the server answered HTTP {response.status}, a redirect"
                            return NoAnswer(TransportFailure.REDIRECT, message, sent=True)
                        await self._gate.acquire()  # the same gate as the real client's
                        try:
                            return await read(Response(response))
                        finally:
                            self._gate.release()
            except aiohttp.ServerTimeoutError as e:
                return http.broke(TransportFailure.TIMEOUT, e, progress.maybe_sent, before_sending)
            except TimeoutError:
                return http.timed_out(call, progress.maybe_sent)
            except aiohttp.ClientError as e:
                failure = TransportFailure.CONNECTION
                return http.broke(failure, e, progress.maybe_sent, before_sending)
            except TooLarge:
                return NoAnswer(TransportFailure.CONNECTION, "body too large", sent=True)

    class AiohttpPool(OneClient):
        def __init__(self, transport: object, workers: int) -> None:
            if transport is not None:
                raise SystemExit("the aiohttp stack has no in-process transport")
            connector = aiohttp.TCPConnector(limit=max(1, workers), keepalive_timeout=4.0)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=30.0),
                trace_configs=[trace],
            )
            self._client = AiohttpClient(self._session, Slots(http.BODY_READERS))
            self._workers = math.ceil(workers)

        async def close(self) -> None:
            await self._session.close()

    return AiohttpPool


def use(stack: str) -> None:
    """Put ``stack`` behind the HTTP layer's seam, before the run starts."""
    try:
        {
            "httpx": _use_httpx,
            "httpx2": _use_httpx2,
            "httpx-aiohttp": _use_httpx_aiohttp,
            "aiohttp": _use_aiohttp,
            "aiotransport": _use_aiotransport,
        }[stack]()
    except ImportError as e:
        print(f"the {stack} stack needs {e.name}: uv pip install {e.name}", file=sys.stderr)
        raise SystemExit(2) from None


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in STACKS:
        print(f"usage: http_stacks.py {{{'|'.join(STACKS)}}} NANOBATCH-ARGS...", file=sys.stderr)
        raise SystemExit(2)
    stack = sys.argv.pop(1)
    use(stack)
    from pipeline.cli.app import main as nanobatch

    nanobatch()


if __name__ == "__main__":
    main()
