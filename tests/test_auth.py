"""Credentials on the provider seam: an API key where each --auth style puts it, and a token
refreshed once for all workers (before expiry, after a 401), never shown anywhere."""

from __future__ import annotations

import base64
import threading

import anyio
import httpx
import orjson
import pytest

from pipeline.core.config import ApiKey, AuthStyle
from pipeline.core.types import Delivery, Job, OutcomeKind
from pipeline.plan.sources import SourceCache
from pipeline.providers.auth import (
    ApiKeyAuth,
    Credentials,
    CredentialsFailed,
    Token,
    TokenAuth,
)
from pipeline.providers.exchange import exchange
from pipeline.providers.gemini.provider import GeminiProvider
from pipeline.providers.http import HttpClient

SECRET = "ya29.secret-token-value"
JOB = Job("r1", 1, "a mug", (), "gemini-3.1-flash-image-preview", None, None)
IMAGE = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 32).decode()
PART = {"inlineData": {"mimeType": "image/png", "data": IMAGE}}
GENERATION = orjson.dumps({"candidates": [{"content": {"parts": [PART]}, "finishReason": "STOP"}]})
UNAUTHENTICATED = orjson.dumps(
    {"error": {"code": 401, "status": "UNAUTHENTICATED", "message": "token expired"}}
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Refresher:
    """Hands out token-1, token-2, ... each valid for ``ttl_s``; records the threads it ran on."""

    def __init__(self, clock: Clock, ttl_s: float | None = 3600.0) -> None:
        self.clock = clock
        self.ttl_s = ttl_s
        self.calls = 0
        self.threads: set[int] = set()

    def __call__(self) -> Token:
        self.calls += 1
        self.threads.add(threading.get_ident())
        expiry = None if self.ttl_s is None else self.clock() + self.ttl_s
        return Token(f"token-{self.calls}", expiry)


def token_auth(clock: Clock, refresher: Refresher) -> TokenAuth:
    return TokenAuth(refresher, source="a test credential", margin_s=300, now=clock)


@pytest.mark.parametrize(
    ("style", "headers", "params"),
    [
        (AuthStyle.HEADER, {"x-goog-api-key": "k-123"}, {}),
        (AuthStyle.BEARER, {"authorization": "Bearer k-123"}, {}),
        (AuthStyle.QUERY, {}, {"key": "k-123"}),
    ],
)
async def test_an_api_key_travels_where_its_auth_style_says(
    style: AuthStyle, headers: dict[str, str], params: dict[str, str]
) -> None:
    auth = ApiKeyAuth(ApiKey("k-123", "--api-key"), style)
    credentials = await auth.credentials()
    assert (dict(credentials.headers), dict(credentials.params)) == (headers, params)
    assert await auth.rejected(credentials) is None  # a key cannot be refreshed
    assert "k-123" not in repr(credentials) + repr(auth)


async def test_no_key_sends_no_credential() -> None:
    credentials = await ApiKeyAuth(None).credentials()
    assert (dict(credentials.headers), dict(credentials.params)) == ({}, {})


async def test_a_token_is_fetched_once_and_reused_while_fresh() -> None:
    clock = Clock()
    refresher = Refresher(clock)
    auth = token_auth(clock, refresher)
    first = await auth.credentials()
    clock.now += 3000  # 10 minutes before expiry: outside the 5-minute margin
    assert await auth.credentials() is first
    assert first.headers["authorization"] == "Bearer token-1"
    assert refresher.calls == 1
    # The refresher (google-auth's is synchronous) ran off the event loop's thread.
    assert threading.get_ident() not in refresher.threads


async def test_a_token_near_expiry_is_refreshed_once_for_all_workers() -> None:
    clock = Clock()
    refresher = Refresher(clock)
    auth = token_auth(clock, refresher)
    await auth.credentials()
    clock.now += 3600 - 200  # inside the margin
    got: list[Credentials] = []

    async def worker() -> None:
        got.append(await auth.credentials())

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(worker)
    assert refresher.calls == 2
    assert {c.headers["authorization"] for c in got} == {"Bearer token-2"}


async def test_a_short_lived_token_is_renewed_halfway_not_at_every_request() -> None:
    clock = Clock()
    refresher = Refresher(clock, ttl_s=10.0)  # shorter than the 5-minute margin
    auth = token_auth(clock, refresher)
    await auth.credentials()
    clock.now += 4.9
    await auth.credentials()
    assert refresher.calls == 1
    clock.now += 0.2
    await auth.credentials()
    assert refresher.calls == 2


async def test_a_401_is_refreshed_once_for_many_concurrent_workers() -> None:
    clock = Clock()
    refresher = Refresher(clock, ttl_s=None)
    auth = token_auth(clock, refresher)
    used = await auth.credentials()
    fresh: list[Credentials | None] = []

    async def worker() -> None:
        fresh.append(await auth.rejected(used))

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(worker)
    assert refresher.calls == 2
    assert {c.generation if c else None for c in fresh} == {used.generation + 1}


async def test_a_second_401_in_a_row_is_not_refreshed_again() -> None:
    clock = Clock()
    refresher = Refresher(clock, ttl_s=None)
    auth = token_auth(clock, refresher)
    first = await auth.credentials()
    second = await auth.rejected(first)
    assert second is not None
    assert await auth.rejected(second) is None  # the refreshed token was refused too
    assert refresher.calls == 2
    # Once a request with it was accepted, a later 401 is a new first one: refreshed.
    auth.accepted(second)
    assert await auth.rejected(second) is not None
    assert refresher.calls == 3


async def test_a_failed_refresh_is_tried_once_and_stops_every_worker() -> None:
    calls = 0

    def failing() -> Token:
        nonlocal calls
        calls += 1
        raise CredentialsFailed("could not refresh a test credential: run `login` again")

    auth = TokenAuth(failing, source="a test credential")
    for _ in range(3):
        with pytest.raises(CredentialsFailed):
            await auth.credentials()
    assert calls == 1


async def test_the_token_appears_in_no_repr_str_or_error() -> None:
    clock = Clock()
    auth = TokenAuth(lambda: Token(SECRET, None), source="a test credential", now=clock)
    credentials = await auth.credentials()
    token = Token(SECRET, 1.0)
    shown = " ".join([repr(credentials), str(credentials), repr(auth), repr(token), str(token)])
    assert SECRET not in shown
    assert credentials.headers["authorization"] == f"Bearer {SECRET}"


def gemini_server(accepts: set[str], seen: list[str]) -> httpx.MockTransport:
    """Answers a generation to an accepted Bearer token, 401 to any other."""

    def handle(request: httpx.Request) -> httpx.Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        seen.append(token)
        if token in accepts:
            return httpx.Response(200, content=GENERATION)
        return httpx.Response(401, content=UNAUTHENTICATED)

    return httpx.MockTransport(handle)


async def send_all(auth: TokenAuth, server: httpx.MockTransport, n: int) -> list[OutcomeKind]:
    provider = GeminiProvider("http://api.invalid", auth)
    request = provider.prepare(JOB, SourceCache())
    kinds: list[OutcomeKind] = []
    async with httpx.AsyncClient(transport=server) as http:
        client = HttpClient(http)

        async def worker() -> None:
            outcome = await exchange(provider, client, request)
            assert SECRET not in repr(outcome)
            if outcome.kind is OutcomeKind.RUN_ERROR:
                assert (outcome.reason, outcome.delivery) == ("UNAUTHENTICATED", Delivery.ERROR)
            kinds.append(outcome.kind)

        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(worker)
    return kinds


async def test_a_revoked_token_is_refreshed_once_and_every_request_is_resent() -> None:
    clock = Clock()
    refresher = Refresher(clock)
    auth = token_auth(clock, refresher)
    await auth.credentials()  # token-1, which the server no longer takes
    seen: list[str] = []
    kinds = await send_all(auth, gemini_server({"token-2"}, seen), 20)
    assert kinds == [OutcomeKind.SUCCESS] * 20
    assert refresher.calls == 2
    assert seen.count("token-1") == 20
    assert seen.count("token-2") == 20


async def test_a_token_refused_again_after_its_refresh_stops_the_run() -> None:
    clock = Clock()
    refresher = Refresher(clock)
    auth = token_auth(clock, refresher)
    seen: list[str] = []
    kinds = await send_all(auth, gemini_server(set(), seen), 20)
    assert kinds == [OutcomeKind.RUN_ERROR] * 20
    # token-1 on first use, token-2 after the first 401: no third refresh.
    assert refresher.calls == 2
    assert len(seen) <= 40


async def test_credentials_that_cannot_be_had_stop_the_run_without_sending() -> None:
    def failing() -> Token:
        raise CredentialsFailed("no credentials found for a test route")

    seen: list[str] = []
    auth = TokenAuth(failing, source="a test credential")
    provider = GeminiProvider("http://api.invalid", auth)
    request = provider.prepare(JOB, SourceCache())
    async with httpx.AsyncClient(transport=gemini_server(set(), seen)) as http:
        outcome = await exchange(provider, HttpClient(http), request)
    assert (outcome.kind, outcome.reason) == (OutcomeKind.RUN_ERROR, "CREDENTIALS_FAILED")
    assert outcome.delivery is Delivery.NOT_SENT
    assert seen == []
