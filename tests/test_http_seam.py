"""The HTTP layer behind the provider seam: every transport exception kind becomes one of
"not sent" / "sent, no answer", the reader is fed the answer or let go, and credentials are
added where their ``Auth`` says, to a URL the provider built."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import httpx
import pytest

from pipeline.core.budget import possibly_billed
from pipeline.core.types import Delivery, Job, NoAnswer, Outcome, TransportFailure
from pipeline.plan.sources import SourceCache
from pipeline.providers.auth import Credentials
from pipeline.providers.base import PreparedRequest
from pipeline.providers.gemini.provider import GeminiProvider
from pipeline.providers.http import HttpClient, new_http_client
from tests.helpers import Recorder

PROVIDER = GeminiProvider("http://api.invalid/", timeouts_s={"1K": 5.0}, api_version="v1beta")
REQUEST = PROVIDER.prepare(
    Job("r", 1, "p", (), "gemini-2.5-flash-image", None, None), SourceCache()
)


def transport(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.MockTransport:
    return httpx.MockTransport(handler)


def raising(error: Exception) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    return transport(handler)


async def send(
    mock: httpx.MockTransport,
    credentials: Credentials | None = None,
    reader: Recorder | None = None,
    request: PreparedRequest = REQUEST,
) -> Outcome | NoAnswer:
    async with httpx.AsyncClient(transport=mock) as http:
        return await HttpClient(http).send(
            request, credentials or Credentials(), reader or Recorder()
        )


# Whether each kind of transport failure may have reached the server: the money rule's input.
@pytest.mark.parametrize(
    ("error", "failure", "sent"),
    [
        (httpx.ConnectError("refused"), TransportFailure.CONNECTION, False),
        (httpx.ConnectTimeout("slow connect"), TransportFailure.TIMEOUT, False),
        (httpx.PoolTimeout("no connection free"), TransportFailure.TIMEOUT, False),
        (httpx.ProxyError("proxy refused"), TransportFailure.CONNECTION, False),
        (httpx.UnsupportedProtocol("ftp://"), TransportFailure.CONNECTION, False),
        (httpx.WriteTimeout("slow upload"), TransportFailure.TIMEOUT, True),
        (httpx.WriteError("broken pipe"), TransportFailure.CONNECTION, True),
        (httpx.ReadTimeout("slow answer"), TransportFailure.TIMEOUT, True),
        (httpx.ReadError("connection reset"), TransportFailure.CONNECTION, True),
        (httpx.RemoteProtocolError("disconnected"), TransportFailure.CONNECTION, True),
        (httpx.DecodingError("bad gzip"), TransportFailure.CONNECTION, True),
    ],
)
async def test_each_transport_failure_says_whether_it_may_have_been_billed(
    error: Exception, failure: TransportFailure, sent: bool
) -> None:
    answer = await send(raising(error))
    assert isinstance(answer, NoAnswer)
    assert (answer.failure, answer.sent) == (failure, sent)
    outcome = PROVIDER.classify_failure(*answer)
    assert outcome.delivery is (Delivery.NO_ANSWER if sent else Delivery.NOT_SENT)
    assert possibly_billed(outcome) is sent
    assert "api.invalid" not in answer.message  # only the exception's class: a URL may hold a key


async def test_the_reader_is_fed_the_answer_then_finishes() -> None:
    reader = Recorder()
    answer = await send(transport(lambda r: httpx.Response(200, content=b"{}")), reader=reader)
    assert isinstance(answer, Outcome)
    assert reader.events[0] == "begin 200"
    assert reader.events[-1] == "finish"
    assert reader.body == b"{}"


async def test_a_body_cut_off_midway_aborts_the_reader_and_was_sent() -> None:
    class Broken(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b'{"candidates": ['
            raise httpx.ReadError("connection reset")

    reader = Recorder()
    answer = await send(transport(lambda r: httpx.Response(200, stream=Broken())), reader=reader)
    assert isinstance(answer, NoAnswer)
    assert (answer.failure, answer.sent) == (TransportFailure.CONNECTION, True)
    assert reader.events == ["begin 200", "feed", "abort"]


PATH = "/v1beta/models/gemini-2.5-flash-image:generateContent"


@pytest.mark.parametrize(
    ("credentials", "url", "header"),
    [
        (Credentials({"x-goog-api-key": "k"}), PATH, "k"),
        (Credentials(params={"key": "k"}), PATH + "?key=k", None),
        (Credentials({"authorization": "Bearer t"}), PATH, None),
    ],
)
async def test_credentials_go_where_the_auth_says_on_the_providers_url(
    credentials: Credentials, url: str, header: str | None
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"{}")

    await send(transport(handler), credentials)
    (request,) = seen
    assert request.url.raw_path.decode() == url
    assert request.headers.get("x-goog-api-key") == header
    assert request.headers["content-type"] == "application/json"
    assert dict(request.headers).items() >= dict(credentials.headers).items()


async def test_a_redirect_is_not_followed_and_names_only_origins() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(307, headers={"location": "http://elsewhere.invalid/x?key=k"})

    answer = await send(transport(handler), Credentials(params={"key": "k"}))
    assert isinstance(answer, NoAnswer)
    assert answer.failure is TransportFailure.REDIRECT
    assert "elsewhere.invalid" in answer.message
    assert "key=k" not in answer.message


async def test_a_cookie_an_answer_sets_is_never_sent_back() -> None:
    """No API here needs cookies: one set by an answer (a gateway's, a load balancer's) must not
    ride along on the next request, credentials or not."""
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("cookie"))
        return httpx.Response(200, json={}, headers={"set-cookie": "session=abc; Path=/"})

    async with new_http_client(transport(handler), connections=1) as http:
        client = HttpClient(http)
        for _ in range(2):
            await client.send(REQUEST, Credentials(), Recorder())
    assert seen == [None, None]
    assert not http.cookies


async def test_a_request_carries_the_clients_defaults_its_own_headers_winning() -> None:
    """API calls skip httpx's ``build_request``: what it merged is merged here, the same way
    (the client's default headers unless the call names them, in any case; its timeouts)."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"{}")

    own = replace(REQUEST, body=b"{}", headers={**REQUEST.headers, "User-Agent": "mine"})
    async with httpx.AsyncClient(
        transport=transport(handler), timeout=httpx.Timeout(None, connect=3.0)
    ) as http:
        await HttpClient(http).send(own, Credentials({"x-goog-api-key": "k"}), Recorder())
    (request,) = seen
    assert request.headers.get_list("user-agent") == ["mine"]
    assert request.headers["accept-encoding"] == http.headers["accept-encoding"]
    assert request.headers["x-goog-api-key"] == "k"
    assert request.headers["content-length"] == "2"
    assert request.extensions["timeout"] == {"connect": 3.0, "read": None, "write": None,
                                             "pool": None}  # fmt: skip
