"""The stack users get (``new_http_client(None, ...)``) on real sockets on 127.0.0.1: the body
reaches the reader as it arrives, and every way an exchange can break says whether the request
may have reached the server, which decides "possibly billed"."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import anyio
import httpx
import pytest
from anyio.abc import SocketStream

from pipeline.core.config import ApiKey
from pipeline.core.types import Job, NoAnswer, Outcome, TransportFailure
from pipeline.plan.sources import SourceCache
from pipeline.providers import aiosession
from pipeline.providers.auth import ApiKeyAuth
from pipeline.providers.gemini.provider import GeminiProvider
from pipeline.providers.http import HttpClient, new_http_client
from pipeline.providers.wire import default_tls
from pipeline.run.scheduler import run_manifest
from pipeline.store.inflight import InFlight
from pipeline.store.spend import spent_in
from tests.helpers import Recorder, run_config, write_csv

KEY = ApiKey("test-key-0123456789", "test")


@asynccontextmanager
async def serving(handle: Callable[[SocketStream], Awaitable[None]]) -> AsyncIterator[str]:
    """A server on a free loopback port that runs ``handle`` for each connection."""

    async def serve(stream: SocketStream) -> None:
        async with stream:
            await handle(stream)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        yield f"http://127.0.0.1:{port}"
        tg.cancel_scope.cancel()


async def read_request(stream: SocketStream) -> bytes:
    """The request's head and body (its content-length), as it arrived."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive()
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += await stream.receive()
    return data


async def exchange(base_url: str, reader: Recorder) -> Outcome | NoAnswer:
    provider = GeminiProvider(base_url, ApiKeyAuth(KEY), timeouts_s={"1K": 10.0})
    request = provider.prepare(Job("r", 1, "p", (), "m", None, None), SourceCache())
    credentials = await provider.auth.credentials()
    async with new_http_client(None, 1) as http:
        return await HttpClient(http).send(request, credentials, reader)


async def test_a_large_body_reaches_the_reader_whole_and_in_chunks() -> None:
    body = bytes(range(256)) * 8192  # 2 MB

    async def answer(stream: SocketStream) -> None:
        await read_request(stream)
        head = f"HTTP/1.1 200 OK\r\ncontent-length: {len(body)}\r\n\r\n".encode()
        await stream.send(head)
        for start in range(0, len(body), 100_000):
            await stream.send(body[start : start + 100_000])

    reader = Recorder()
    async with serving(answer) as url:
        outcome = await exchange(url, reader)
    assert isinstance(outcome, Outcome)
    assert bytes(reader.body) == body
    assert reader.events[0] == "begin 200"
    assert reader.events[-1] == "finish"
    assert reader.events.count("feed") > 1


# API calls read aiohttp's answer with no httpx response around it: the reader still gets
# the head as httpx gives it. Names in lower case and a repeated header's values joined; a
# head that is not UTF-8 decoded as Latin-1 (aiohttp's own decoding gives lone surrogates,
# which no UTF-8 writer, orjson or a text file, takes).
@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (b"X-Trace: a\r\nx-trace: b\r\nRetry-After: 3", {"x-trace": "a, b", "retry-after": "3"}),
        (b"X-Note: caf\xe9", {"x-note": "caf\u00e9"}),
    ],
)
async def test_the_head_reaches_the_reader_as_httpx_gives_it(
    fields: bytes, expected: dict[str, str]
) -> None:
    head = b"HTTP/1.1 200 OK\r\n" + fields + b"\r\ncontent-length: 2"

    async def answer(stream: SocketStream) -> None:
        await read_request(stream)
        await stream.send(head + b"\r\n\r\n{}")

    reader = Recorder()
    async with serving(answer) as url:
        await exchange(url, reader)
    raw = [(n, v) for n, _, v in (line.partition(b": ") for line in head.split(b"\r\n")[1:])]
    assert reader.headers == dict(httpx.Headers(raw).items())
    assert expected.items() <= reader.headers.items()


async def test_a_compressed_body_reaches_the_reader_decoded() -> None:
    body = b'{"candidates": []}' * 1000

    async def answer(stream: SocketStream) -> None:
        await read_request(stream)
        packed = gzip.compress(body)
        await stream.send(
            b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\n"
            + f"content-length: {len(packed)}\r\n\r\n".encode()
            + packed
        )

    reader = Recorder()
    async with serving(answer) as url:
        outcome = await exchange(url, reader)
    assert isinstance(outcome, Outcome)
    assert bytes(reader.body) == body


async def test_an_address_that_does_not_parse_is_never_sent() -> None:
    """On aiohttp's sockets (an API call) and through httpx's client (an image link, which a
    gateway's answer names): no answer, never sent, rather than an exception."""
    async with new_http_client(None, 1) as http:
        client = HttpClient(http)
        answers = [
            await client.fetch("POST", "http://[::1/x", b"{}", {}, 5.0),
            await client.download("http://[::1/x.png", 5.0),
        ]
    for answer in answers:
        assert isinstance(answer, NoAnswer)
        assert (answer.failure, answer.sent) == (TransportFailure.CONNECTION, False)


async def test_a_host_that_does_not_encode_is_never_sent() -> None:
    """A host IDNA refuses (an empty label; bad punycode), in an API call or in an image link
    a gateway answered with: no answer, never sent. Both fail before any lookup."""
    async with new_http_client(None, 1) as http:
        client = HttpClient(http)
        answers = [
            await client.fetch("POST", "http://a..b/x", b"{}", {}, 5.0),
            await client.download("http://a..b/x.png", 5.0),
            await client.download("http://xn--a.example/x.png", 5.0),
        ]
    for answer in answers:
        assert isinstance(answer, NoAnswer)
        assert (answer.failure, answer.sent) == (TransportFailure.CONNECTION, False)


async def test_a_host_that_does_not_encode_is_never_sent_behind_a_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same behind a proxy (HTTP_PROXY): NO_PROXY is matched against the host's name,
    which bad punycode does not have; the proxy is never reached."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with new_http_client(None, 1) as http:
        client = HttpClient(http)
        answers: list[object] = [
            await client.fetch("POST", "http://xn--a.example/x", b"{}", {}, 5.0),
            await client.download("http://xn--a.example/x.png", 5.0),
        ]
    answers.append(await exchange("http://xn--a.example", Recorder()))  # an API call
    for answer in answers:
        assert isinstance(answer, NoAnswer)
        assert (answer.failure, answer.sent) == (TransportFailure.CONNECTION, False)


async def test_a_server_that_read_the_request_and_hung_up_may_have_billed() -> None:
    async def hang_up(stream: SocketStream) -> None:
        await read_request(stream)

    async with serving(hang_up) as url:
        answer = await exchange(url, Recorder())
    assert isinstance(answer, NoAnswer)
    assert (answer.failure, answer.sent) == (TransportFailure.CONNECTION, True)


async def test_a_body_cut_short_lets_the_reader_go_and_may_have_billed() -> None:
    async def cut_short(stream: SocketStream) -> None:
        await read_request(stream)
        await stream.send(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n" + b"x" * 1000)

    reader = Recorder()
    async with serving(cut_short) as url:
        answer = await exchange(url, reader)
    assert isinstance(answer, NoAnswer)
    assert (answer.failure, answer.sent) == (TransportFailure.CONNECTION, True)
    assert reader.events[0] == "begin 200"
    assert reader.events[-1] == "abort"


async def test_the_request_arrives_with_its_key_and_body() -> None:
    seen: list[bytes] = []

    async def record(stream: SocketStream) -> None:
        seen.append(await read_request(stream))
        await stream.send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")

    async with serving(record) as url:
        await exchange(url, Recorder())
    head, _, body = seen[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /")
    assert b"x-goog-api-key: test-key-0123456789" in head.lower()
    assert b'"p"' in body


# What each aiohttp failure becomes: its httpx counterpart, whose class ``http.py`` reads.
@pytest.mark.parametrize(
    ("error", "translated"),
    [
        (aiohttp.ConnectionTimeoutError(), httpx.ConnectTimeout),
        (aiohttp.SocketTimeoutError(), httpx.ReadTimeout),
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError),
        (aiohttp.ClientPayloadError("cut"), httpx.RemoteProtocolError),
        (aiohttp.ClientOSError(104, "reset"), httpx.ReadError),
        (aiohttp.InvalidURL("ftp://x"), httpx.UnsupportedProtocol),
        (ConnectionResetError(), httpx.ReadError),
    ],
)
def test_aiohttp_failures_become_the_httpx_failure_that_says_the_same(
    error: Exception, translated: type[Exception]
) -> None:
    request = httpx.Request("POST", "http://api.invalid/?key=secret")
    with pytest.raises(translated) as caught, aiosession.translated(request):
        raise error
    assert type(caught.value) is translated
    assert "secret" not in str(caught.value)


async def test_requests_go_through_the_proxy_the_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[bytes] = []

    async def proxy(stream: SocketStream) -> None:
        seen.append(await read_request(stream))
        await stream.send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")

    async with serving(proxy) as proxy_url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        outcome = await exchange("http://api.invalid", Recorder())
    assert isinstance(outcome, Outcome)
    assert seen[0].startswith(b"POST http://api.invalid/")


async def test_a_deadline_counts_a_request_sent_only_once_it_had_its_connection() -> None:
    """The whole-attempt deadline cancels a request wherever it is. Waiting for a connection
    (the only one busy), it was never sent; once it had one, the server may bill it."""
    took_first = anyio.Event()

    async def hold(stream: SocketStream) -> None:
        await read_request(stream)
        took_first.set()
        await anyio.sleep_forever()  # reads the request, never answers

    answers: dict[str, Outcome | NoAnswer] = {}
    async with serving(hold) as url, new_http_client(None, 1) as http:
        client = HttpClient(http)

        async def send(name: str, deadline_s: float) -> None:
            provider = GeminiProvider(url, ApiKeyAuth(KEY), timeouts_s={"1K": deadline_s})
            request = provider.prepare(Job(name, 1, "p", (), "m", None, None), SourceCache())
            answers[name] = await client.send(
                request, await provider.auth.credentials(), Recorder()
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(send, "holding", 0.3)
            await took_first.wait()  # the one connection is taken
            await send("waiting", 0.1)
    for name, sent in (("holding", True), ("waiting", False)):
        answer = answers[name]
        assert isinstance(answer, NoAnswer)
        assert (answer.failure, answer.sent) == (TransportFailure.TIMEOUT, sent), name


async def test_a_ca_bundle_that_does_not_load_stops_the_run_before_anything_is_noted_as_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The TLS context is loaded by the first https connection, which comes after its request
    was noted in flight: a CA bundle that cannot be read (a wrong SSL_CERT_FILE) must stop an
    https run before that, as it did when every client loaded it, not leave requests that
    never went out to be charged at their worst case by the next run."""
    manifest = write_csv(
        tmp_path / "m.csv", [{"id": f"r{n}", "prompt": "a lamp"} for n in range(4)]
    )
    out = tmp_path / "out"
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    config = run_config(manifest, out, base_url="https://127.0.0.1:9", concurrency=2)
    default_tls.cache_clear()  # another test may have loaded it already
    try:
        with pytest.raises(FileNotFoundError):
            await run_manifest(config)
    finally:
        default_tls.cache_clear()
    assert InFlight(out).recover() == []
    assert spent_in(out) == 0.0
