"""Frozen value types shared by every layer: jobs going in, outcomes coming out.

Nothing here does I/O. Per-row results are values (``Outcome``), never exceptions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple


class Status(StrEnum):
    """Terminal status of a manifest row, as written to the ledger's ``status`` column."""

    SUCCEEDED = "succeeded"
    REFUSED = "refused"
    FAILED = "failed"
    INVALID = "invalid"


class OutcomeKind(StrEnum):
    """What one HTTP attempt means; the retry policy maps each kind to exactly one action."""

    SUCCESS = "success"  # at least one non-thought image
    REFUSAL = "refusal"  # the model or its filters declined: final unless opted in
    RATE_LIMIT = "rate_limit"  # 429: wait what the server asked
    TRANSIENT = "transient"  # 408/5xx/timeout/connection/malformed: backoff and retry
    ROW_ERROR = "row_error"  # 400 about this row: retrying cannot help
    MODEL_ERROR = "model_error"  # no row can use this model (404, a quota of 0): fail its rows
    RUN_ERROR = "run_error"  # key, permission, billing: stop the whole run


class Tier(StrEnum):
    """A service tier: the same synchronous call at another price and latency (``--tier``,
    a row's ``tier`` column, the ledger's ``tier``)."""

    STANDARD = "standard"
    FLEX = "flex"  # half price, best effort: held up to ~15 min, or shed
    PRIORITY = "priority"  # dearer, for latency-critical work


class Delivery(StrEnum):
    """How far one attempt got, which is what decides whether the server may have billed it
    (``budget.possibly_billed``). The client and the classifier state it; nothing guesses it."""

    NOT_SENT = "not_sent"  # never reached the server (no connection): nothing can be billed
    NO_ANSWER = "no_answer"  # sent, no complete answer: the server may have finished and billed
    ERROR = "error"  # the server answered that it failed (an error status or error object)
    ANSWERED = "answered"  # the server answered a generation (2xx), usable or not


class QuotaScope(StrEnum):
    """Which quota a 429 is about; a per-day quota will not clear in minutes."""

    MINUTE = "minute"
    DAY = "day"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class SpooledFile:
    """An image decoded from the answer straight into a temp file of the output folder
    (``DIR/.tmp/``) while the answer arrived: storing it is a rename, not a second write."""

    path: str
    size: int  # bytes in the file
    sha256: str  # of the file's bytes, hashed as they were written
    head: bytes  # its first bytes, enough to tell the image type without opening it


@dataclass(frozen=True, slots=True)
class ImagePart:
    """One output image, already decoded from base64: its bytes in memory, or (``spooled``)
    in a temp file, ``data`` then empty."""

    data: bytes
    mime_type: str
    spooled: SpooledFile | None = None
    # The digest of ``data``, once asked for: the provenance record and the stored image's
    # description both need it, and each hashed a 512 px image again (~0.1 ms a time).
    # Not an argument, so ``dataclasses.replace`` never carries one over to other bytes.
    _digest: str | None = field(default=None, init=False, compare=False, repr=False)

    @property
    def size(self) -> int:
        return self.spooled.size if self.spooled else len(self.data)

    @property
    def sha256(self) -> str:
        if self.spooled:
            return self.spooled.sha256
        digest = self._digest
        if digest is None:
            digest = hashlib.sha256(self.data).hexdigest()
            object.__setattr__(self, "_digest", digest)  # frozen: a cache, not a change
        return digest


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts from ``usageMetadata`` (None where the server did not say), and what the
    route said it billed for the request when it says so (a gateway's ``usage.cost``)."""

    prompt_tokens: int | None = None
    output_tokens: int | None = None
    thoughts_tokens: int | None = None
    cost_usd: float | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """The classified result of one attempt.

    ``reason`` is the ledger's reason vocabulary: ``STOP`` for a success, a finishReason or
    ``PROMPT_BLOCKED:<blockReason>`` for a refusal, ``RATE_LIMITED``, ``QUOTA_EXHAUSTED``,
    ``SERVER_ERROR_<code>``, ``SHED`` (a Flex request the server dropped), ``TIMEOUT``,
    ``CONNECTION``, ``MALFORMED_RESPONSE``, ``INVALID_REQUEST``, a model-level reason
    (``MODEL_NOT_FOUND``, ``NO_QUOTA``) or a run-level reason (``API_KEY_INVALID``,
    ``PERMISSION_DENIED``, ``TIER_NOT_SUPPORTED``...).
    """

    kind: OutcomeKind
    reason: str
    http_status: int | None = None
    images: tuple[ImagePart, ...] = ()
    image_urls: tuple[str, ...] = ()  # images a gateway returned as links: to be downloaded
    text: str | None = None  # model text (kept for refusals and text-only answers)
    message: str | None = None  # server or transport error message
    retry_after_s: float | None = None  # delay the server asked for, if any
    quota: QuotaScope | None = None
    usage: Usage = field(default_factory=Usage)
    model_version: str | None = None
    response_id: str | None = None
    tier: Tier | None = None  # the tier that served it, where the answer says (else None)
    # A refusal the route charges as a generation (Vertex's Model Armor blocks): the money rule
    # bills it at the image's price instead of the refusal price.
    billed_refusal: bool = False
    # An outcome built without saying how far it got counts as answered: when unsure, the money
    # rule must err on "possibly billed", never on "free".
    delivery: Delivery = Delivery.ANSWERED


@dataclass(frozen=True, slots=True)
class RawResponse:
    """An HTTP answer as received, before any interpretation. Header names are lower-case."""

    status: int
    headers: dict[str, str]
    body: bytes


class TransportFailure(StrEnum):
    """A request that got no usable HTTP answer."""

    TIMEOUT = "timeout"
    CONNECTION = "connection"
    REDIRECT = "redirect"  # an API call answered 3xx: not followed, so the key stays home


class NoAnswer(NamedTuple):
    """What the client returns instead of an answer: why there was none, and whether the
    request may have reached the server (False only when it provably never left)."""

    failure: TransportFailure
    message: str
    sent: bool


@dataclass(frozen=True, slots=True)
class Job:
    """One manifest row, resolved and validated: everything needed to build its request."""

    row_id: str
    line: int  # 1-based data row number in the manifest, for messages
    prompt: str
    images: tuple[str, ...]  # absolute local paths, or http(s):// and gs:// URIs (as fileData)
    model: str  # the model id to send
    image_size: str | None  # None: do not send imageSize
    aspect_ratio: str | None  # None: do not send aspectRatio
    system_instruction: str | None = None
    temperature: float | None = None
    seed: int | None = None
    output_name: str | None = None  # file name stem for the images; None: the row id
    metadata: str | None = None  # the manifest's other columns, as a JSON object
    tier: Tier = Tier.STANDARD  # the service tier asked for (--tier, or the row's column)

    @property
    def output_stem(self) -> str:
        return self.output_name or self.row_id


@dataclass(frozen=True, slots=True)
class InvalidRow:
    """A manifest row that cannot be sent: it costs nothing and never stops the valid ones."""

    row_id: str
    line: int
    field: str
    reason: str
    prompt: str = ""  # as far as it could be made: the contact sheet shows it
    metadata: str | None = None  # the row's other columns, as a JSON object
