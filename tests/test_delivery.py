"""The client says structurally whether a request reached the server: what "possibly billed"
is decided from. Real sockets on 127.0.0.1 where the difference lives in the socket."""

from __future__ import annotations

import socket

import anyio
import httpx
import pytest
from anyio.abc import SocketStream

from pipeline.core.budget import possibly_billed
from pipeline.core.config import ApiKey
from pipeline.core.types import Job, NoAnswer, TransportFailure
from pipeline.plan.sources import SourceCache
from pipeline.providers.auth import ApiKeyAuth
from pipeline.providers.gemini.classify import classify_failure
from pipeline.providers.gemini.provider import GeminiProvider
from pipeline.providers.http import HttpClient, new_http_client

KEY = ApiKey("test-key-0123456789", "test")


def raising(error: Exception) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    return httpx.MockTransport(handler)


async def send(http: httpx.AsyncClient, base_url: str, timeout_s: float = 5.0) -> NoAnswer:
    provider = GeminiProvider(base_url, ApiKeyAuth(KEY), timeouts_s={"1K": timeout_s})
    request = provider.prepare(Job("r", 1, "p", (), "m", None, None), SourceCache())
    credentials = await provider.auth.credentials()
    answer = await HttpClient(http).send(request, credentials, provider.reader(request))
    assert isinstance(answer, NoAnswer)
    return answer


@pytest.mark.parametrize(
    ("error", "sent"),
    [
        (httpx.ConnectError("refused"), False),
        (httpx.ConnectTimeout("slow connect"), False),
        (httpx.ReadTimeout("slow answer"), True),
        (httpx.RemoteProtocolError("Server disconnected without sending a response."), True),
        (httpx.ReadError("connection reset"), True),
    ],
)
async def test_the_client_says_whether_the_request_may_have_reached_the_server(
    error: Exception, sent: bool
) -> None:
    async with httpx.AsyncClient(transport=raising(error)) as http:
        answer = await send(http, "http://api.invalid")
    assert answer.sent is sent
    assert possibly_billed(classify_failure(*answer)) is sent


async def test_a_refused_connection_was_not_sent() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with new_http_client(None, 1) as http:
        answer = await send(http, f"http://127.0.0.1:{port}")
    assert (answer.failure, answer.sent) == (TransportFailure.CONNECTION, False)


async def test_a_request_the_server_read_and_never_answered_was_sent() -> None:
    got_request = anyio.Event()

    async def swallow(stream: SocketStream) -> None:
        async with stream:
            await stream.receive()
            got_request.set()
            await anyio.sleep_forever()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, swallow)
        async with new_http_client(None, 1) as http:
            answer = await send(http, f"http://127.0.0.1:{port}", 0.3)
        tg.cancel_scope.cancel()
    assert got_request.is_set()
    assert (answer.failure, answer.sent) == (TransportFailure.TIMEOUT, True)
    assert possibly_billed(classify_failure(*answer))


@pytest.mark.usefixtures("clock")  # the 120 s timeout passes on a virtual clock
async def test_a_timeout_while_still_connecting_was_not_sent() -> None:
    async def connect_for_ever(request: httpx.Request) -> httpx.Response:
        # What httpcore reports while a TCP connection is being made, and then nothing.
        await request.extensions["trace"]("connection.connect_tcp.started", {})
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async with httpx.AsyncClient(transport=httpx.MockTransport(connect_for_ever)) as http:
        answer = await send(http, "http://api.invalid", 120)
    assert (answer.failure, answer.sent) == (TransportFailure.TIMEOUT, False)
    assert not possibly_billed(classify_failure(*answer))
