"""Classify one HTTP answer, or a request that got none, into an ``Outcome``.

Pure and total: (status, headers, body) in, a value out; no I/O, no logging, and no exception
for any server input. The HTTP status decides the kind and the body refines the reason, so an
unknown finishReason, a gateway's error page or a truncated body still lands somewhere sensible.

A 2xx generation is read once (one JSON parse, each image decoded once) and judged on the
evidence, most trusted first:

1. a non-thought image: ``inlineData``/``inline_data``; failing that a ``data:image/...`` URI in
   text -> SUCCESS. An image that was made and paid for is never thrown away, whatever
   finishReason or token counts say. A link (``fileData`` or a URL in text) is an image only
   with ``follow_links`` (``--follow-image-links``): SUCCESS, with the links to download.
   Without it, text that mentions a link is text (rule 6: TEXT_ONLY).
2. ``promptFeedback`` with no candidates, or with a ``blockReason`` -> ``PROMPT_BLOCKED:<reason>``.
3. a candidate we could not read (wrong types, undecodable image data) -> MALFORMED_RESPONSE,
   because a misread is not evidence of a refusal.
4. ``candidatesTokenCount == 0`` -> the finishReason, or NO_IMAGE when that says STOP.
5. finishReason other than STOP -> that finishReason, known or not.
6. TEXT_ONLY when the model only wrote text, else NO_IMAGE.

The tier the request asked for refines the reading last (``tiering``: a shed Flex request, a
tier the route does not offer); a 2xx also says which tier served it, where the route reports it.

Each outcome also says how far the attempt got (``Delivery``): an error the server reported
(any non-2xx status, or a gateway's error object in a 2xx body) is ``ERROR``; every other 2xx,
readable or not, is ``ANSWERED``. ``budget.possibly_billed`` decides the money from that alone.
What an error status means is ``errormap``'s, shared with the routes that relay Google's errors.
"""

from __future__ import annotations

from typing import Any, assert_never

from pipeline.core import jsonread as jr
from pipeline.core.tiers import reported_tier
from pipeline.core.types import (
    Delivery,
    Outcome,
    OutcomeKind,
    RawResponse,
    Tier,
    TransportFailure,
    Usage,
)
from pipeline.providers.gemini.errormap import (
    classify_error,
    malformed,
    server_failed,
)
from pipeline.providers.gemini.errors import error_from_bytes, error_from_json, snippet
from pipeline.providers.gemini.extract import Spooled, read_candidates
from pipeline.providers.tiering import tier_outcome

STOP = "STOP"


def classify(
    response: RawResponse,
    *,
    now: float | None = None,
    follow_links: bool = False,
    tier: Tier = Tier.STANDARD,
    spooled: Spooled | None = None,
) -> Outcome:
    """Classify one HTTP answer. ``now`` (Unix seconds) anchors an HTTP-date ``Retry-After``;
    ``follow_links`` counts image links in the answer as its images (rule 1); ``tier`` is the
    tier the request asked for (sheds and refused tiers: ``tiering``); ``spooled``: images the
    streaming reader (``stream``) decoded to disk, by the text standing for them in the body."""
    if 200 <= response.status < 300:
        outcome = _classify_2xx(response, now, follow_links, spooled)
    else:
        error = error_from_bytes(response.body)
        outcome = server_failed(classify_error(response.status, error, response, now))
    return tier_outcome(outcome, tier)


def classify_failure(failure: TransportFailure, message: str, sent: bool = True) -> Outcome:
    """Classify a request that got no usable HTTP answer: worth another attempt, except a
    redirect, which every request would meet again (the base URL is wrong): it stops the run.
    ``sent`` says whether it may have reached the server (the client knows; see ``NoAnswer``)."""
    match failure:
        case TransportFailure.TIMEOUT:
            reason = "TIMEOUT"
        case TransportFailure.CONNECTION:
            reason = "CONNECTION"
        case TransportFailure.REDIRECT:  # the server answered, with no generation: not billed
            return Outcome(
                OutcomeKind.RUN_ERROR,
                "REDIRECTED",
                message=jr.message(message),
                delivery=Delivery.ERROR,
            )
        case _:
            assert_never(failure)
    delivery = Delivery.NO_ANSWER if sent else Delivery.NOT_SENT
    return Outcome(OutcomeKind.TRANSIENT, reason, message=jr.message(message), delivery=delivery)


# --- 2xx ----------------------------------------------------------------------------------


def _classify_2xx(
    response: RawResponse, now: float | None, follow_links: bool, spooled: Spooled | None
) -> Outcome:
    http = response.status
    try:
        data = jr.loads(response.body)
    except (ValueError, RecursionError):
        # A truncated JSON body's first words are base64 noise; a page's title is worth showing.
        shown = None if response.body[:64].lstrip()[:1] in (b"{", b"[") else snippet(response.body)
        detail = f": {shown}" if shown else ""
        return malformed(http, f"body is not valid JSON ({len(response.body)} bytes){detail}")
    return _classify_data(data, response, now, follow_links, spooled)


def classify_parsed(
    data: object, *, http: int = 200, follow_links: bool = False, tier: Tier = Tier.STANDARD
) -> Outcome:
    """Classify a 2xx answer that is already parsed: a batch result line's ``response`` is
    the same ``GenerateContentResponse`` an online answer is, read by the same rules."""
    outcome = _classify_data(data, RawResponse(http, {}, b""), None, follow_links)
    return tier_outcome(outcome, tier)


def _classify_data(
    data: object,
    response: RawResponse,
    now: float | None,
    follow_links: bool,
    spooled: Spooled | None = None,
) -> Outcome:
    http = response.status
    candidates = data.get("candidates") if isinstance(data, dict) else None
    feedback = jr.get(data, "promptFeedback", "prompt_feedback") if isinstance(data, dict) else None
    if not isinstance(data, dict) or (not candidates and feedback is None):
        # A gateway that says "error" with a 200: its error code is the better evidence.
        error = error_from_json(data)
        if error is not None:
            code = 429 if error.says_rate_limited else error.code
            if code is not None and code >= 400:
                return server_failed(classify_error(code, error, response, now))
        what = "is not a JSON object" if not isinstance(data, dict) else "has no candidates"
        return malformed(http, (error.message if error else None) or f"body {what}")
    return _classify_generation(data, candidates, feedback, http, follow_links, spooled=spooled)


def _classify_generation(
    data: dict[str, Any],
    candidates: object,
    feedback: object,
    http: int,
    follow_links: bool,
    *,
    spooled: Spooled | None,
) -> Outcome:
    reading = read_candidates(candidates, links=follow_links, spooled=spooled)
    usage = _usage(jr.get(data, "usageMetadata", "usage_metadata"))
    common: dict[str, Any] = {
        "http_status": http,
        "text": reading.text,
        "usage": usage,
        "model_version": jr.string(jr.get(data, "modelVersion", "model_version")),
        "response_id": jr.string(jr.get(data, "responseId", "response_id")),
        "tier": _served_tier(jr.get(data, "usageMetadata", "usage_metadata")),
    }
    if reading.images or reading.image_urls:
        notes = [m for m in (reading.finish_message, reading.problem) if m]
        return Outcome(
            OutcomeKind.SUCCESS,
            reading.finish_reason or STOP,
            images=reading.images,
            image_urls=reading.image_urls,
            message="; ".join(notes) or None,
            **common,
        )
    if isinstance(feedback, dict):
        block = jr.enum(jr.get(feedback, "blockReason", "block_reason"))
        if block is not None or not candidates:
            # proto3 JSON omits a default enum, so a bare promptFeedback means UNSPECIFIED.
            reason = f"PROMPT_BLOCKED:{block or 'BLOCKED_REASON_UNSPECIFIED'}"
            block_message = jr.string(
                jr.get(feedback, "blockReasonMessage", "block_reason_message")
            )
            return Outcome(OutcomeKind.REFUSAL, reason, message=jr.message(block_message), **common)
    elif feedback is not None:
        return malformed(http, "promptFeedback is not an object")
    if reading.problem is not None:
        return malformed(http, reading.problem)
    finish = reading.finish_reason
    if usage.output_tokens == 0:
        reason = finish if finish not in (None, STOP) else "NO_IMAGE"
    elif finish not in (None, STOP):
        reason = finish
    else:
        reason = "TEXT_ONLY" if reading.text else "NO_IMAGE"
    return Outcome(OutcomeKind.REFUSAL, reason, message=reading.finish_message, **common)


def _usage(metadata: object) -> Usage:
    if not isinstance(metadata, dict):
        return Usage()
    return Usage(
        prompt_tokens=jr.integer(jr.get(metadata, "promptTokenCount", "prompt_token_count")),
        output_tokens=jr.integer(
            jr.get(metadata, "candidatesTokenCount", "candidates_token_count")
        ),
        thoughts_tokens=jr.integer(jr.get(metadata, "thoughtsTokenCount", "thoughts_token_count")),
    )


def _served_tier(metadata: object) -> Tier | None:
    """The tier the answer says served it: the Gemini API's ``serviceTier`` (only when the
    request named one), Vertex's ``trafficType``."""
    if not isinstance(metadata, dict):
        return None
    found = jr.get(metadata, "serviceTier", "service_tier")
    return reported_tier(
        found if found is not None else jr.get(metadata, "trafficType", "traffic_type")
    )
