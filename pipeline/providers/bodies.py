"""How the HTTP layer reads an answer's body once it has arrived: fed to the provider's reader
piece by piece, collected whole up to a bound, or streamed to a sink (a batch job's results,
which may be gigabytes). Each is one ``read`` of ``HttpClient``'s exchange."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from pipeline.core.types import Outcome, RawResponse
from pipeline.providers.base import AnswerReader

# A linked image is at most this big (a 4K PNG is ~25 MB); a link can point at anything.
MAX_DOWNLOAD_BYTES = 64 * 10**6


class Arrived(Protocol):
    """An answer whose head has arrived and whose body is read as it comes: an httpx response,
    or ``aiotransport.Answer`` on aiohttp's sockets. Header names are matched in lower case."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def is_redirect(self) -> bool: ...

    def aiter_bytes(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class TooLarge(Exception):
    """A linked image's body passed ``MAX_DOWNLOAD_BYTES``."""


async def feed_reader(response: Arrived, reader: AnswerReader) -> Outcome:
    """Feed the answer to ``reader`` as it arrives (its size is the API's business: a 4K
    answer is ~25 MB), and the reader's outcome.

    Not ``response.aread()``: that keeps the body on the response, which sits in a reference
    cycle with its stream, so multi-megabyte bodies would live on until the cyclic garbage
    collector happened to run.
    """
    reader.begin(response.status_code, response.headers)
    try:
        async for chunk in response.aiter_bytes():
            reader.feed(chunk)
    except BaseException:
        reader.abort()
        raise
    return reader.finish()


async def collect(response: Arrived) -> RawResponse:
    """An answer as it came (a linked image, a token), read up to ``MAX_DOWNLOAD_BYTES``."""
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if total > MAX_DOWNLOAD_BYTES:
            raise TooLarge
        chunks.append(chunk)
    headers = {k.lower(): v for k, v in response.headers.items()}
    return RawResponse(response.status_code, headers, b"".join(chunks))


class BodySink(Protocol):
    """Where ``HttpClient.stream`` puts a 2xx body: ``start`` once, then ``write`` per piece."""

    async def start(self, status: int, headers: Mapping[str, str]) -> None: ...

    async def write(self, chunk: bytes) -> None: ...


async def to_sink(response: Arrived, sink: BodySink) -> RawResponse:
    """A 2xx body to ``sink`` as it arrives; any other answer collected (error bodies are small)."""
    if not 200 <= response.status_code < 300:
        return await collect(response)
    headers = {k.lower(): v for k, v in response.headers.items()}
    await sink.start(response.status_code, headers)
    async for chunk in response.aiter_bytes():
        await sink.write(chunk)
    return RawResponse(response.status_code, headers, b"")
