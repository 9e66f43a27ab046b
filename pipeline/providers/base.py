"""The provider seam: what a route (a protocol at an address, with its credentials) must say
and do so that the run can send rows through it without knowing the protocol.

A provider builds the request for a ``Job`` (URL, body, timeout, the request's fingerprint),
reads an answer into an ``Outcome`` through an ``AnswerReader`` fed as the body arrives, says
what a transport failure means, holds the route's ``Auth``, and declares its ``Capabilities``.
It never touches the ledger, and the run never builds a URL or reads a JSON field: everything
on the far side of this seam is the provider's, everything on this side the run's.

    run ──prepare(job)──> PreparedRequest ──http + auth──> bytes ──reader──> Outcome
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from pipeline.core.types import Job, Outcome, RawResponse, Tier, TransportFailure
from pipeline.plan.sources import SourceCache
from pipeline.providers.auth import Auth

if TYPE_CHECKING:  # the HTTP layer reads answers through this module's readers
    from pipeline.providers.http import HttpClient

JSON_HEADERS: Mapping[str, str] = {"content-type": "application/json"}


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a route offers, for checks made before anything is sent (``validate``, the CLI)."""

    tiers: tuple[Tier, ...]  # service tiers it serves, the default first
    batch: bool  # whether the batch executor can send its rows as jobs
    link_schemes: tuple[str, ...]  # source-link prefixes it takes as links, not files
    model_id: re.Pattern[str]  # what a model id must look like on this route
    credentials: tuple[str, ...]  # where its key or credentials come from, in the order looked

    def accepts_link(self, link: str) -> bool:
        return link.startswith(self.link_schemes)


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """A request ready to send: everything but the credentials, which the route's ``Auth``
    adds at send time (a token may be refreshed between two attempts of one request)."""

    model: str
    url: str  # never holds a credential: ``?key=`` is the Auth's to add
    body: bytes
    fingerprint: str  # hash of everything that shapes the result (plan.fingerprint); ledgered
    timeout_s: float  # the whole attempt, first byte sent to last byte read
    upload_bytes: int
    headers: Mapping[str, str] = field(default_factory=lambda: JSON_HEADERS)  # the protocol's
    method: str = "POST"
    tier: Tier = Tier.STANDARD  # the service tier asked for (the job's), for its reader


class AnswerReader(Protocol):
    """Reads one HTTP answer into an ``Outcome`` as it arrives, in this order: ``begin`` once
    with the status line, ``feed`` per body chunk, then ``finish``. When the body does not
    arrive whole (a timeout, a dropped connection), ``abort`` is called instead of ``finish``
    and whatever the reader kept (buffers, spooled files) is let go: the HTTP layer then
    reports a transport failure.

    A streaming reader (images decoded to disk while the body arrives) and ``WholeBody`` (the
    body kept and classified at the end) are interchangeable behind this interface.
    """

    def begin(self, status: int, headers: Mapping[str, str]) -> None: ...

    def feed(self, chunk: bytes) -> None: ...

    def finish(self) -> Outcome: ...

    def abort(self) -> None: ...


class WholeBody:
    """The simple reader: keeps the body, then classifies the whole answer at once."""

    __slots__ = ("_chunks", "_classify", "_headers", "_status")

    def __init__(self, classify: Callable[[RawResponse], Outcome]) -> None:
        self._classify = classify
        self._status = 0
        self._headers: dict[str, str] = {}
        self._chunks: list[bytes] = []

    def begin(self, status: int, headers: Mapping[str, str]) -> None:
        self._status = status
        self._headers = {k.lower(): v for k, v in headers.items()}

    def feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)

    def finish(self) -> Outcome:
        body = b"".join(self._chunks)
        self._chunks = []  # a 4K answer is ~25 MB: not kept past its classification
        return self._classify(RawResponse(self._status, self._headers, body))

    def abort(self) -> None:
        self._chunks = []


class Provider(Protocol):
    """One route: a protocol, an address and its credentials. Built once per run
    (``registry.provider_for``) and shared by every worker: it holds no per-request state."""

    @property
    def name(self) -> str:
        """The route's name as the CLI spells it (``gemini``)."""
        ...

    @property
    def capabilities(self) -> Capabilities: ...

    @property
    def auth(self) -> Auth:
        """Gives the credentials for each request; shared by all workers (one refresh)."""
        ...

    def prepare(self, job: Job, sources: SourceCache) -> PreparedRequest:
        """The request for ``job``; raises ``SourceImageError`` if a source went bad. Pure
        apart from reading sources through the cache (run it in a thread when ``job.images``
        is not empty; without sources it reads nothing)."""
        ...

    def reader(self, request: PreparedRequest) -> AnswerReader:
        """A fresh reader for one answer to ``request``."""
        ...

    def classify_failure(self, failure: TransportFailure, message: str, sent: bool) -> Outcome:
        """The outcome of an attempt that got no usable answer (``NoAnswer``'s fields)."""
        ...

    async def preflight(self, client: HttpClient) -> Provider:
        """Check the route once, unbilled, before the first paid request; the provider to
        send through (this one, or one with what the check settled, e.g. Vertex's project
        from the credentials). Raises ``UsageError`` (exit 2, nothing spent) when no row
        could be sent: wrong project, location, scope, key, or a model the route lacks."""
        ...
