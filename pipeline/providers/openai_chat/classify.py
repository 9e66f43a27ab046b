"""Classify one chat-completions answer into an ``Outcome``, by the gateways' conventions, and
their errors as their Google equivalents (a gateway relays Google's status and error).

Pure and total, like the native classifier: (status, headers, body) in, a value out, no
exception for any server input. The rules, each a table test:

1. An image in the first choice (any of the four shapes, ``answer.py``) -> SUCCESS, whatever
   the finish reasons say: an image made and paid for is never thrown away. A hosted link
   counts only with ``--follow-image-links``; without it an answer whose image is a link
   stops the run (RUN_ERROR ``IMAGE_LINKS_NOT_FOLLOWED``): every row would be paid for and
   lost the same way, so the run says how to fix it after at most --concurrency of them.
2. ``finish_reason: "content_filter"`` -> REFUSAL, reason Google's ``native_finish_reason``
   when the gateway passes it on (``IMAGE_SAFETY``...), else ``CONTENT_FILTER``.
3. A blocked prompt: an error with code (or type) ``prompt_blocked``, or whose relayed Google
   answer (``error.metadata.raw``) has a ``promptFeedback`` -> REFUSAL
   ``PROMPT_BLOCKED:<blockReason>``, as on the native route; never retried.
4. An error status or an error object: Google's error relayed in ``error.metadata.raw``
   (OpenRouter) is read for its details (RetryInfo's delay, QuotaFailure's scope, ErrorInfo),
   else the gateway's own ``{"message", "type": "upstream_error", "code"}`` (new-api); then the
   native mapping: 429 waits (the delay asked), 408/5xx are transient, 401/403 stop the run,
   404 fails the model's rows, other 4xx fail the row. A gateway's 402 (out of credit) stops
   the run (RUN_ERROR ``PAYMENT_REQUIRED``). A 2xx body with an error and no choices counts
   as that error.
5. A choice that cannot be read -> MALFORMED_RESPONSE (transient): a misread is no refusal.
   ``finish_reason: "error"`` (the upstream failed mid-answer) -> transient, not billed.
6. Google's ``native_finish_reason`` other than STOP, else OpenAI's finish reason other than
   ``stop`` (``length`` -> MAX_TOKENS) -> REFUSAL with that reason.
7. Words instead of an image -> REFUSAL ``TEXT_ONLY`` (a reason to show the user), nothing at
   all -> ``NO_IMAGE``.

The tier asked for refines the reading last, as on the native route (``tiering``: a shed Flex
request, a tier the gateway does not offer), and the answer's ``service_tier`` says which tier
served it. ``usage.cost`` (OpenRouter, USD) goes into ``Usage.cost_usd``: what the attempt
cost, instead of the price table's figure. Delivery as on the native route: an error the server
reported is ``ERROR`` (not billed), every other 2xx ``ANSWERED``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pipeline.core import jsonread as jr
from pipeline.core.tiers import reported_tier
from pipeline.core.types import Delivery, Outcome, OutcomeKind, RawResponse, Tier
from pipeline.providers.gemini.errormap import classify_error, malformed, server_failed
from pipeline.providers.gemini.errors import ErrorBody, error_from_bytes, error_from_json, snippet
from pipeline.providers.openai_chat.answer import ChatReading, read_choice, read_usage
from pipeline.providers.tiering import tier_outcome

STOP = "STOP"
PAYMENT_REQUIRED = 402
_BLOCKED = "prompt_blocked"
_FINISH = {"LENGTH": "MAX_TOKENS", "CONTENT_FILTER": "CONTENT_FILTER"}


def classify(
    response: RawResponse,
    *,
    now: float | None = None,
    follow_links: bool = False,
    tier: Tier = Tier.STANDARD,
) -> Outcome:
    """Classify one HTTP answer. ``now`` (Unix seconds) anchors an HTTP-date ``Retry-After``;
    ``follow_links`` counts a hosted image link as the answer's image (rule 1); ``tier`` is
    the tier the request asked for (sheds and refused tiers: ``tiering``, as on every route)."""
    return tier_outcome(_classify(response, now, follow_links), tier)


def _classify(response: RawResponse, now: float | None, follow_links: bool) -> Outcome:
    data = _parse(response.body)
    error = data.get("error") if isinstance(data, dict) else None
    if 200 <= response.status < 300:
        if not isinstance(data, dict):
            return _unreadable(response, data)
        if error is None or data.get("choices"):
            return _classify_choice(data, response.status, follow_links)
    if isinstance(error, dict) and (blocked := _blocked(error, response.status)) is not None:
        return blocked
    found = _relayed(error) if isinstance(error, dict) else None
    body = found or error_from_json(data) or ErrorBody(message=snippet(response.body))
    code = response.status
    if 200 <= code < 300:  # an error object in a 2xx body: its own code is the evidence
        code = 429 if body.says_rate_limited else (body.code or 0)
        if code < 400:
            return malformed(response.status, body.message or "an error and no choices")
    if code == PAYMENT_REQUIRED:
        message = f"{body.message or 'payment required'} (add credit to the gateway account)"
        outcome = Outcome(OutcomeKind.RUN_ERROR, "PAYMENT_REQUIRED", response.status)
        return server_failed(replace(outcome, message=jr.message(message)))
    return server_failed(classify_error(code, body, response, now))


def _parse(body: bytes) -> object:
    """The JSON document, or None when the body is not JSON."""
    if body[:64].lstrip()[:1] not in (b"{", b"["):
        return None
    try:
        return jr.loads(body)
    except (ValueError, RecursionError):
        return None


def _unreadable(response: RawResponse, data: object) -> Outcome:
    body = response.body
    if data is not None:
        return malformed(response.status, "body is not a JSON object")
    # A truncated JSON body's first words are base64 noise; a page's title is worth showing.
    shown = None if body[:64].lstrip()[:1] in (b"{", b"[") else snippet(body)
    detail = f": {shown}" if shown else ""
    return malformed(response.status, f"body is not valid JSON ({len(body)} bytes){detail}")


def _relayed(error: dict[str, Any]) -> ErrorBody | None:
    """Google's own error, relayed as text in ``error.metadata.raw`` (OpenRouter), with the
    gateway's code and message filling what it lacks; None when there is none."""
    raw = _raw(error)
    if raw is None:
        return None
    google = error_from_bytes(raw.encode("utf-8", "replace"))
    outer = error_from_json({"error": error}) or ErrorBody()
    return replace(google, code=google.code or outer.code, message=google.message or outer.message)


def _raw(error: dict[str, Any]) -> str | None:
    metadata = error.get("metadata")
    return jr.string(metadata.get("raw")) if isinstance(metadata, dict) else None


def _blocked(error: dict[str, Any], http: int) -> Outcome | None:
    """Rule 3: a prompt the gateway (or Google behind it) blocked, else None."""
    marks = [jr.string(error.get(k)) for k in ("code", "type")]
    raw = _raw(error)
    answer = _parse(raw.encode("utf-8", "replace")) if raw else None
    feedback = (
        jr.get(answer, "promptFeedback", "prompt_feedback") if isinstance(answer, dict) else None
    )
    if not any(m and m.lower() == _BLOCKED for m in marks) and not isinstance(feedback, dict):
        return None
    block = (
        jr.enum(jr.get(feedback, "blockReason", "block_reason"))
        if isinstance(feedback, dict)
        else None
    )
    reason = f"PROMPT_BLOCKED:{block or 'BLOCKED_REASON_UNSPECIFIED'}"
    message = jr.message(jr.string(error.get("message")))
    return Outcome(OutcomeKind.REFUSAL, reason, http, message=message)


def _classify_choice(data: dict[str, Any], http: int, follow_links: bool) -> Outcome:
    reading = read_choice(data, links=follow_links)
    common: dict[str, Any] = {
        "http_status": http,
        "text": reading.text,
        "usage": read_usage(data.get("usage")),
        "model_version": jr.string(data.get("model")),
        "response_id": jr.string(data.get("id")),
        "tier": reported_tier(data.get("service_tier")),  # OpenAI's "default" is standard
    }
    native = reading.native_finish_reason
    if reading.images or reading.image_urls:
        return Outcome(
            OutcomeKind.SUCCESS,
            native or STOP,
            images=reading.images,
            image_urls=reading.image_urls,
            message=reading.problem,
            **common,
        )
    if reading.linked:
        message = (
            "the gateway answered with a link to the image, not the image: rerun with "
            "--follow-image-links to fetch such links (without the gateway's key)"
        )
        return Outcome(OutcomeKind.RUN_ERROR, "IMAGE_LINKS_NOT_FOLLOWED", message=message, **common)
    return _no_image(reading, common)


def _no_image(reading: ChatReading, common: dict[str, Any]) -> Outcome:
    finish, native = reading.finish_reason, reading.native_finish_reason
    why = reading.refusal
    if finish == "CONTENT_FILTER":
        reason = native if native not in (None, STOP) else "CONTENT_FILTER"
        return Outcome(OutcomeKind.REFUSAL, reason or "CONTENT_FILTER", message=why, **common)
    if finish == "ERROR":
        outcome = Outcome(OutcomeKind.TRANSIENT, "UPSTREAM_ERROR", message=why, **common)
        return replace(outcome, delivery=Delivery.ERROR)
    if reading.problem is not None:
        return malformed(common["http_status"], reading.problem)
    if native not in (None, STOP):
        reason = native
    elif finish not in (None, STOP):
        reason = _FINISH.get(finish, finish)
    else:
        reason = "TEXT_ONLY" if reading.text or why else "NO_IMAGE"
    return Outcome(OutcomeKind.REFUSAL, reason or "NO_IMAGE", message=why, **common)
