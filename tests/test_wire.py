"""``wire``, the connections a provider's API calls go out on: answers framed every way HTTP/1.1
frames them, connections reused only when nothing about them is in doubt, memory bounded
while an answer waits for its reader, and whether a broken request may have been billed."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import ssl
import time
from typing import Any

import anyio
import httpx
import pytest
import trustme
import yarl
from anyio.abc import SocketStream

from pipeline.core.types import Job, Outcome
from pipeline.plan.sources import SourceCache
from pipeline.providers import wireconn
from pipeline.providers.aiotransport import AiohttpTransport, Outgoing
from pipeline.providers.auth import ApiKeyAuth
from pipeline.providers.bodies import Arrived
from pipeline.providers.gemini.provider import GeminiProvider
from pipeline.providers.http import HttpClient, new_http_client
from pipeline.providers.wire import Wire, WireAnswer
from tests.helpers import Recorder
from tests.test_network_stack import KEY, read_request, serving

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"


def new_wire(keepalive_s: float = 5.0, connections: int = 2) -> Wire:
    return Wire(connections, ssl.create_default_context(), keepalive_s)


async def call(w: Wire, url: str, headers: list[tuple[str, str]] | None = None) -> WireAnswer:
    parsed = yarl.URL(url + "/v1/m:generateContent")
    return await w.call(
        "POST", str(parsed), parsed, b'{"a":1}', headers or [], connect_s=5.0, trace=None
    )


async def body(answer: Arrived) -> bytes:
    try:
        return b"".join([chunk async for chunk in answer.aiter_bytes()])
    finally:
        await answer.aclose()


class Server:
    """Answers each request on a connection with the next of ``answers``; counts both."""

    def __init__(self, *answers: bytes, close: bool = False) -> None:
        self.answers = list(answers)
        self.close = close
        self.connections = 0
        self.requests: list[bytes] = []

    async def __call__(self, stream: SocketStream) -> None:
        self.connections += 1
        while self.answers:
            try:
                self.requests.append(await read_request(stream))
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return
            await stream.send(self.answers.pop(0))
            if self.close:
                return


async def test_a_kept_alive_connection_carries_the_next_request() -> None:
    server = Server(OK, OK, OK)
    w = new_wire()
    async with serving(server) as url:
        for _ in range(3):
            assert await body(await call(w, url)) == b"{}"
    w.close()
    assert (server.connections, len(server.requests)) == (1, 3)
    assert server.requests[0].startswith(b"POST /v1/m:generateContent HTTP/1.1\r\nHost: 127.0.0.1:")


@pytest.mark.parametrize(
    ("answer", "expected", "reused"),
    [
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
         b"abcde", True),
        (b"HTTP/1.1 100 Continue\r\n\r\n" + OK, b"{}", True),
        (b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}", b"{}", False),
        (b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n{}", b"{}", False),
    ],
)  # fmt: skip
async def test_every_framing_reaches_the_reader_whole(
    answer: bytes, expected: bytes, reused: bool
) -> None:
    server = Server(answer, OK)
    w = new_wire()
    async with serving(server) as url:
        assert await body(await call(w, url)) == expected
        assert await body(await call(w, url)) == b"{}"
    w.close()
    assert server.connections == (1 if reused else 2)


async def test_a_body_that_ends_with_the_connection_is_whole_and_the_connection_is_not_reused() -> (
    None
):
    server = Server(b"HTTP/1.1 200 OK\r\n\r\nall of it", OK, close=True)
    w = new_wire()
    async with serving(server) as url:
        assert await body(await call(w, url)) == b"all of it"
        assert await body(await call(w, url)) == b"{}"
    w.close()
    assert server.connections == 2


async def test_an_idle_connection_is_dropped_after_its_keepalive() -> None:
    server = Server(OK, OK)
    w = new_wire(keepalive_s=0.05)
    async with serving(server) as url:
        assert await body(await call(w, url)) == b"{}"
        await anyio.sleep(0.1)
        assert await body(await call(w, url)) == b"{}"
    w.close()
    assert server.connections == 2


@pytest.mark.parametrize("extra", [b"HTTP/1.1 200 OK\r\n", OK.replace(b"{}", b"[]")])
async def test_bytes_after_the_answer_mean_the_connection_is_never_reused(extra: bytes) -> None:
    server = Server(OK + extra, OK)
    w = new_wire()
    async with serving(server) as url:
        answer = await call(w, url)
        assert (answer.status_code, answer.headers) == (200, {"content-length": "2"})
        assert await body(answer) == b"{}"  # nothing of the unasked answer
        assert await body(await call(w, url)) == b"{}"
    w.close()
    assert server.connections == 2


async def test_a_malformed_answer_may_have_been_billed() -> None:
    w = new_wire()
    async with serving(Server(b"HTTP/1.1 abc\r\n\r\n")) as url:
        with pytest.raises(httpx.RemoteProtocolError):
            await call(w, url)
    w.close()


async def test_a_header_that_would_split_is_refused_before_anything_is_sent() -> None:
    server = Server(OK)
    w = new_wire()
    async with serving(server) as url:
        with pytest.raises(httpx.LocalProtocolError):
            await call(w, url, [("x-goog-api-key", "key\r\nx-evil: 1")])
    w.close()
    assert server.connections == 0


async def test_an_answer_waiting_for_its_reader_holds_a_bounded_buffer() -> None:
    big = bytes(range(256)) * (8 * 4096)  # 8 MB

    async def answer(stream: SocketStream) -> None:
        await read_request(stream)
        await stream.send(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(big) + big)

    w = new_wire()
    async with serving(answer) as url:
        got = await call(w, url)
        await anyio.sleep(0.3)  # the reader is late: the socket stops being read
        connection = got._connection
        assert connection is not None
        assert connection.paused
        assert connection.buffered < wireconn.PAUSE_BYTES + (1 << 20)
        assert await body(got) == big
    w.close()


@pytest.mark.parametrize("sent", [1, wireconn.WAKE_BYTES + 1])
async def test_a_request_cancelled_mid_answer_lets_its_slot_and_connection_go(sent: int) -> None:
    """Cancelled (the attempt's deadline) before its caller had the head, or while it read the
    body: the one request slot is free again and the half-read connection is not kept."""
    connections = 0

    async def trickle_then_answer(stream: SocketStream) -> None:
        nonlocal connections
        connections += 1
        await read_request(stream)
        if connections == 1:
            await stream.send(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (sent + 1))
            await stream.send(b"x" * sent)
            await anyio.sleep_forever()
        await stream.send(OK)

    w = new_wire(connections=1)
    async with serving(trickle_then_answer) as url:
        with anyio.move_on_after(0.2) as waited:
            await body(await call(w, url))
        assert waited.cancelled_caught
        with anyio.fail_after(2):
            assert await body(await call(w, url)) == b"{}"
    w.close()
    assert connections == 2


async def test_https_answers_over_a_verified_connection_and_a_bad_certificate_sends_nothing() -> (
    None
):
    ca = trustme.CA()
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(served)
    requests: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                requests.append(head + await reader.readexactly(length))
                writer.write(OK)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=served)
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    async with server:
        w = Wire(2, trusting, 5.0)
        for _ in range(2):
            assert await body(await call(w, url)) == b"{}"
        w.close()
        assert len(requests) == 2
        with pytest.raises(httpx.ConnectError):
            await call(new_wire(), url)  # the system's CAs: not this server's
    assert len(requests) == 2


@pytest.mark.parametrize(
    "headers",
    [
        [("x-a", "1"), ("x-b", "2\r")],
        [("x-a", "1\n"), ("x-b", "2")],
        [("x\r\nx-evil", "1")],
        [("x-a", "\ud800")],
    ],
)
async def test_no_header_of_the_callers_can_split_or_break_the_request(
    headers: list[tuple[str, str]],
) -> None:
    server = Server(OK)
    w = new_wire()
    async with serving(server) as url:
        with pytest.raises(httpx.LocalProtocolError):
            await call(w, url, headers)
        # A header that is fine, in UTF-8 as aiohttp wrote it, still goes out.
        assert await body(await call(w, url, [("x-note", "café")])) == b"{}"
    w.close()
    assert server.requests[0].count(b"x-note: caf\xc3\xa9\r\n") == 1


async def test_a_compressed_answer_with_a_non_ascii_header_is_read_and_lets_its_slot_go() -> None:
    """httpx's response (which decodes the body) is given the head as it came: the decoded
    strings would be encoded again as ASCII, and a Latin-1 byte raised out of ``send``."""
    packed = gzip.compress(b"{}")
    answer = (
        b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\nx-note: caf\xe9\r\n"
        + b"content-length: %d\r\n\r\n" % len(packed)
        + packed
    )
    async with serving(Server(answer, answer)) as url, new_http_client(None, 1) as http:
        provider = GeminiProvider(url, ApiKeyAuth(KEY), timeouts_s={"1K": 5.0})
        request = provider.prepare(Job("r", 1, "p", (), "m", None, None), SourceCache())
        client = HttpClient(http)
        for _ in range(2):  # the one request slot is free again
            reader = Recorder()
            with anyio.fail_after(2):
                outcome = await client.send(request, await provider.auth.credentials(), reader)
            assert isinstance(outcome, Outcome)
            assert (bytes(reader.body), reader.headers["x-note"]) == (b"{}", "caf\u00e9")


@pytest.mark.parametrize("late", ["slot", "connection"])
async def test_a_deadline_that_passes_as_a_request_gets_its_turn_sends_nothing(
    late: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slot or connection handed over in the same turn of the loop as the attempt's deadline
    passes: the await that took it has finished, so anyio's cancellation lands only at the
    next await, which must come before the request is written (it would be billed)."""
    server = Server(OK, OK)
    w = new_wire(connections=1)
    heard: list[str] = []

    async def trace(name: str, info: dict[str, object]) -> None:
        heard.append(name)

    async with serving(server) as url:
        loop = asyncio.get_running_loop()
        parsed = yarl.URL(url + "/v1/m:generateContent")
        holding = await call(w, url)  # the one slot, and the connection the next would reuse
        assert [chunk async for chunk in holding.aiter_bytes()] == [b"{}"]
        connection = holding._connection
        assert connection is not None
        if late == "slot":

            def turn() -> None:  # the slot goes to the waiting request...
                w.done(holding._key, connection)
                time.sleep(0.25)  # ...and the loop is busy past its deadline

            loop.call_later(0.1, turn)
        else:
            await holding.aclose()
            connection.close()  # the next request connects anew
            real = loop.create_connection

            async def connect(*args: Any, **kwargs: Any) -> Any:
                made = await real(*args, **kwargs)
                ready = loop.create_future()

                def turn() -> None:  # the connection is made as the deadline passes
                    ready.set_result(None)
                    scope.cancel()

                loop.call_soon(turn)
                await ready
                return made

            monkeypatch.setattr(loop, "create_connection", connect)
        with anyio.move_on_after(0.2) as scope:
            await w.call("POST", str(parsed), parsed, b"{}", [], connect_s=5.0, trace=trace)
        assert scope.cancelled_caught
        assert heard == ["wire.request.started"]
        await anyio.sleep(0.05)
    w.close()
    assert len(server.requests) == 1


async def test_a_head_that_never_ends_is_refused_before_it_fills_memory() -> None:
    async def endless(stream: SocketStream) -> None:
        await read_request(stream)
        await stream.send(b"HTTP/1.1 200 OK\r\nx-a: ")
        with contextlib.suppress(anyio.BrokenResourceError):
            for _ in range(64):
                await stream.send(b"a" * (1 << 20))

    w = new_wire()
    async with serving(endless) as url:
        with anyio.fail_after(1), pytest.raises(httpx.RemoteProtocolError):
            await call(w, url)
    w.close()


async def test_header_values_come_without_surrounding_whitespace_as_on_aiohttp() -> None:
    server = Server(b"HTTP/1.1 200 OK\r\nx-a: b \t\r\nx-b:\t c\r\ncontent-length: 2\r\n\r\n{}")
    w = new_wire()
    async with serving(server) as url:
        answer = await call(w, url)
        assert answer.headers == {"x-a": "b", "x-b": "c", "content-length": "2"}
        await answer.aclose()
    w.close()


async def test_a_body_whose_last_transfer_coding_is_not_chunked_ends_with_the_connection() -> None:
    server = Server(b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nall of it", close=True)
    w = new_wire()
    async with serving(server) as url:
        assert await body(await call(w, url)) == b"all of it"
    w.close()


async def test_an_answer_to_head_has_no_body_and_its_connection_is_not_reused() -> None:
    server = Server(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n", OK)
    w = new_wire()
    async with serving(server) as url:
        parsed = yarl.URL(url + "/v1/files")
        with anyio.fail_after(2):
            answer = await w.call("HEAD", str(parsed), parsed, b"", [], connect_s=5.0, trace=None)
            assert (answer.status_code, await body(answer)) == (200, b"")
            assert await body(await call(w, url)) == b"{}"
    w.close()
    assert server.connections == 2


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\nx-a: b\ncontent-length: 2\n\n{}",  # bare line feeds
        b"HTTP/1.1 200 OK\r\nx-a: b\r\n c\r\ncontent-length: 2\r\n\r\n{}",  # a folded value
        b"HTTP/1.1 200 OK\r\nx-a: \x01b\x7f\r\ncontent-length: 2\r\n\r\n{}",  # control bytes
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2  \r\n{}\r\n0\r\n\r\n",
    ],
)
async def test_a_sloppy_answer_aiohttp_reads_is_read_the_same(head: bytes) -> None:
    """The answer to a billed request: refused, it would be paid for again on the retry.
    aiohttp's response parser (llhttp too) is lenient in these ways (not in framing)."""
    transport = AiohttpTransport(2, ssl.create_default_context(), 5.0)
    try:
        async with serving(Server(head, head)) as url:
            outgoing = Outgoing("POST", url + "/v1/m:generateContent", b"{}", [], {}, None)
            aiohttp_answer = await transport.call(outgoing)
            expected = (dict(aiohttp_answer.headers), await body(aiohttp_answer))
            wire_answer = await transport.api_call(outgoing)
            assert isinstance(wire_answer, WireAnswer)
            assert (wire_answer.headers, await body(wire_answer)) == expected
    finally:
        await transport.aclose()


async def test_an_answer_done_after_the_wire_closed_closes_its_connection() -> None:
    server = Server(OK, OK)
    w = new_wire()
    async with serving(server) as url:
        answer = await call(w, url)
        w.close()  # the run ends while an answer is still being read
        assert await body(answer) == b"{}"
        assert not any(w._idle.values())  # its connection was closed, not kept
