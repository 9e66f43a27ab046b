"""The chat gateways' answers classified: each image shape, each refusal and error convention
(classify.py's rules), and arbitrary JSON, which never crashes the classifier."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.core.types import (
    Delivery,
    ImagePart,
    OutcomeKind,
    QuotaScope,
    RawResponse,
    Tier,
    Usage,
)
from pipeline.providers.openai_chat.classify import classify
from tests import strategies
from tests.strategies import some_of

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR-final"
DRAFT = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR-draft"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF-final"
LINK = "https://cdn.gateway.example/out/abc123.png"
NOW = 1_445_412_480.0

SUCCESS, REFUSAL, RATE_LIMIT = OutcomeKind.SUCCESS, OutcomeKind.REFUSAL, OutcomeKind.RATE_LIMIT
TRANSIENT, ROW_ERROR = OutcomeKind.TRANSIENT, OutcomeKind.ROW_ERROR
RUN_ERROR, MODEL_ERROR = OutcomeKind.RUN_ERROR, OutcomeKind.MODEL_ERROR
FINAL = (ImagePart(PNG, "image/png"),)


def data_url(data: bytes = PNG, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def image_entry(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def answer(
    message: dict[str, Any],
    finish: str | None = "stop",
    native: str | None = "STOP",
    cost: object = 0.067,
    **extra: Any,
) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish, "message": message}
    if native is not None:
        choice["native_finish_reason"] = native
    usage = {"prompt_tokens": 12, "completion_tokens": 1400,
             "completion_tokens_details": {"reasoning_tokens": 280}, "cost": cost}  # fmt: skip
    return {"id": "gen-1", "model": "google/gemini-3.1-flash-image-preview",
            "choices": [choice], "usage": usage, **extra}  # fmt: skip


def google_error(code: int, status: str, message: str, *details: dict[str, Any]) -> str:
    error = {"code": code, "message": message, "status": status, "details": list(details)}
    return json.dumps({"error": error})


def raw_error(code: int, raw: str) -> dict[str, Any]:
    """OpenRouter: Google's error body as a string in error.metadata.raw."""
    metadata = {"raw": raw, "provider_name": "Google AI Studio"}
    return {"error": {"message": "Provider returned error", "code": code, "metadata": metadata}}


def upstream_error(code: int, message: str) -> dict[str, Any]:
    """new-api: the upstream's message, type upstream_error."""
    return {"error": {"message": message, "type": "upstream_error", "param": "", "code": code}}


RETRY_5S = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "5s"}
PER_DAY = {
    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
    "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel"}],
}
BLOCKED_ANSWER = json.dumps({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}})
OVERLOADED = "The model is overloaded. Please try again later."


def response(status: int, body: object, headers: dict[str, str] | None = None) -> RawResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return RawResponse(status=status, headers=headers or {}, body=raw)


def case(raw: RawResponse, kind: OutcomeKind, reason: str, id: str, **fields: object) -> Any:
    return pytest.param(raw, {"kind": kind, "reason": reason, **fields}, id=id)


SHAPES = [
    # Rule 1: the four image shapes; the last image of the first place that has one.
    case(response(200, answer({"content": "Here it is.", "images": [image_entry(data_url())]})),
         SUCCESS, "STOP", "images-array", images=FINAL, text="Here it is.",
         usage=Usage(12, 1400, 280, 0.067), model_version="google/gemini-3.1-flash-image-preview",
         response_id="gen-1", delivery=Delivery.ANSWERED),
    case(response(200, answer({"content": [image_entry(data_url(DRAFT)), image_entry(data_url()),
                                           {"type": "text", "text": "caption"}]})),
         SUCCESS, "STOP", "content-parts-last-image", images=FINAL, text="caption"),
    case(response(200, answer({"content": f"![image]({data_url(DRAFT)})\n\n![image]({data_url()})"
                                          "\n\nHere you go"})),
         SUCCESS, "STOP", "markdown-last-image", images=FINAL, text="Here you go"),
    case(response(200, answer({"content": f"![image]({data_url(JPEG, 'image/jpeg')})"})),
         SUCCESS, "STOP", "markdown-jpeg", images=(ImagePart(JPEG, "image/jpeg"),), text=None),
    case(response(200, answer({"content": "", "images": [image_entry(data_url())]},
                              finish="content_filter", native="IMAGE_SAFETY")),
         SUCCESS, "IMAGE_SAFETY", "an-image-is-kept-whatever-the-finish-reason", images=FINAL),
    case(response(200, answer({"content": f"![image]({LINK})"})),
         RUN_ERROR, "IMAGE_LINKS_NOT_FOLLOWED", "hosted-link-without-follow-stops-the-run",
         images=(), image_urls=(), delivery=Delivery.ANSWERED),
    case(response(200, answer({"images": [image_entry(LINK)]})),
         RUN_ERROR, "IMAGE_LINKS_NOT_FOLLOWED", "hosted-link-in-images-without-follow"),
    # Rule 2: content_filter is a refusal, with Google's reason when passed on.
    case(response(200, answer({"content": "", "refusal": "The image was filtered out."},
                              finish="content_filter", native="IMAGE_SAFETY", cost=0)),
         REFUSAL, "IMAGE_SAFETY", "content-filter-native-reason",
         message="The image was filtered out.", usage=Usage(12, 1400, 280, 0.0)),
    case(response(200, answer({"content": None}, finish="content_filter", native=None)),
         REFUSAL, "CONTENT_FILTER", "content-filter-without-native-reason"),
    # Rule 3: a blocked prompt, as the 400 a gateway sends.
    case(response(400, {"error": {"message": "The prompt was blocked (PROHIBITED_CONTENT).",
                                  "type": "invalid_request_error", "code": "prompt_blocked",
                                  "metadata": {"raw": BLOCKED_ANSWER}}}),
         REFUSAL, "PROMPT_BLOCKED:PROHIBITED_CONTENT", "prompt-blocked-400-with-raw-answer",
         http_status=400),
    case(response(400, {"error": {"message": "blocked", "code": "prompt_blocked"}}),
         REFUSAL, "PROMPT_BLOCKED:BLOCKED_REASON_UNSPECIFIED", "prompt-blocked-code-only"),
    case(response(400, raw_error(400, BLOCKED_ANSWER)),
         REFUSAL, "PROMPT_BLOCKED:PROHIBITED_CONTENT", "blocked-answer-relayed-in-raw"),
    # Rule 4: errors as their Google equivalents, in both conventions.
    case(response(429, raw_error(429, google_error(429, "RESOURCE_EXHAUSTED", "quota", RETRY_5S))),
         RATE_LIMIT, "RATE_LIMITED", "raw-429-with-retry-delay", retry_after_s=5.0,
         delivery=Delivery.ERROR),
    case(response(429, raw_error(429, google_error(429, "RESOURCE_EXHAUSTED", "q", PER_DAY))),
         RATE_LIMIT, "QUOTA_EXHAUSTED", "raw-429-per-day", quota=QuotaScope.DAY),
    case(response(429, upstream_error(429, "Upstream load for this group is saturated")),
         RATE_LIMIT, "RATE_LIMITED", "upstream-429-no-delay", retry_after_s=None,
         message="Upstream load for this group is saturated"),
    case(response(429, upstream_error(429, "busy"), {"retry-after": "7"}),
         RATE_LIMIT, "RATE_LIMITED", "upstream-429-retry-after-header", retry_after_s=7.0),
    case(response(503, raw_error(503, google_error(503, "UNAVAILABLE", OVERLOADED))),
         TRANSIENT, "SERVER_ERROR_503", "raw-503", message=OVERLOADED, delivery=Delivery.ERROR),
    case(response(500, upstream_error(500, "empty candidates")),
         TRANSIENT, "SERVER_ERROR_500", "upstream-500-empty-candidates"),
    case(response(504, raw_error(504, "upstream timed out")),
         TRANSIENT, "SERVER_ERROR_504", "raw-not-json", message="upstream timed out"),
    case(response(502, b"<html><title>502 Bad Gateway</title></html>"),
         TRANSIENT, "SERVER_ERROR_502", "html-page", message="502 Bad Gateway"),
    case(response(401, {"error": {"message": "User not found.", "code": 401}}),
         RUN_ERROR, "UNAUTHENTICATED", "401-stops-the-run", delivery=Delivery.ERROR),
    case(response(402, {"error": {"message": "Insufficient credits.", "code": 402}}),
         RUN_ERROR, "PAYMENT_REQUIRED", "402-stops-the-run", delivery=Delivery.ERROR),
    case(response(403, upstream_error(403, "key not allowed")),
         RUN_ERROR, "PERMISSION_DENIED", "403-stops-the-run"),
    case(response(404, upstream_error(404, "no such model")),
         MODEL_ERROR, "MODEL_NOT_FOUND", "404-fails-the-model"),
    case(response(400, upstream_error(400, "Invalid value at aspectRatio")),
         ROW_ERROR, "INVALID_REQUEST", "400-fails-the-row"),
    case(response(200, upstream_error(429, "busy")),
         RATE_LIMIT, "RATE_LIMITED", "error-object-in-a-200", delivery=Delivery.ERROR,
         http_status=200),
    case(response(200, raw_error(503, google_error(503, "UNAVAILABLE", OVERLOADED))),
         TRANSIENT, "SERVER_ERROR_503", "raw-error-in-a-200"),
    # Rule 5: unreadable answers are transient; an upstream failure is not billed.
    case(response(200, b'{"id": "gen-1", "choices": [{"message": {"content": "![image](data:im'),
         TRANSIENT, "MALFORMED_RESPONSE", "truncated-body", delivery=Delivery.ANSWERED),
    case(response(200, {"id": "gen-1", "choices": []}),
         TRANSIENT, "MALFORMED_RESPONSE", "no-choices"),
    case(response(200, answer({"images": [image_entry("data:image/png;base64,@@@")]})),
         TRANSIENT, "MALFORMED_RESPONSE", "undecodable-data-url"),
    case(response(200, [1, 2]), TRANSIENT, "MALFORMED_RESPONSE", "not-an-object"),
    case(response(200, answer({"content": ""}, finish="error", native=None)),
         TRANSIENT, "UPSTREAM_ERROR", "finish-error", delivery=Delivery.ERROR),
    # Rules 6 and 7: no image.
    case(response(200, answer({"content": ""}, finish="stop", native="RECITATION")),
         REFUSAL, "RECITATION", "native-finish-reason"),
    case(response(200, answer({"content": "..."}, finish="length", native=None)),
         REFUSAL, "MAX_TOKENS", "length"),
    case(response(200, answer({"content": "I can't make that image."})),
         REFUSAL, "TEXT_ONLY", "words-instead-of-an-image", text="I can't make that image."),
    case(response(200, answer({"content": ""})), REFUSAL, "NO_IMAGE", "nothing-at-all"),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "expected"), SHAPES)
def test_chat_answers_classify_as_expected(raw: RawResponse, expected: dict[str, object]) -> None:
    outcome = classify(raw, now=NOW)
    assert {name: getattr(outcome, name) for name in expected} == expected


def test_the_tier_that_served_is_read_from_service_tier() -> None:
    body = answer({"images": [image_entry(data_url())]}, service_tier="flex")
    assert classify(response(200, body), tier=Tier.FLEX).tier is Tier.FLEX
    body = answer({"images": [image_entry(data_url())]}, service_tier="default")
    assert classify(response(200, body)).tier is Tier.STANDARD
    assert classify(response(200, answer({"images": [image_entry(data_url())]}))).tier is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (response(503, raw_error(503, google_error(503, "UNAVAILABLE", OVERLOADED))), "SHED"),
        (response(429, upstream_error(429, "Resource exhausted. Please try again later.")), "SHED"),
        (response(400, upstream_error(400, "Flex API is not supported for model: m.")),
         "TIER_NOT_SUPPORTED"),
        (response(429, raw_error(429, google_error(429, "RESOURCE_EXHAUSTED", "q", RETRY_5S))),
         "RATE_LIMITED"),
    ],
    ids=["shed-503", "shed-429", "tier-refused", "a-rate-limit-is-no-shed"],
)  # fmt: skip
def test_a_flex_request_reads_sheds_and_refused_tiers_as_on_the_native_route(
    raw: RawResponse, reason: str
) -> None:
    assert classify(raw, now=NOW, tier=Tier.FLEX).reason == reason
    if reason in ("SHED", "TIER_NOT_SUPPORTED"):  # readings only a Flex request has
        assert classify(raw, now=NOW).reason != reason


@pytest.mark.parametrize(
    "message",
    [
        {"content": f"![image]({LINK})"},
        {"content": f"Here: {LINK}"},
        {"images": [image_entry(LINK)]},
        {"content": [image_entry("https://cdn.example/a.png"), image_entry(LINK)]},
    ],
    ids=["markdown", "bare-url", "images-array", "parts-last"],
)
def test_a_hosted_link_is_the_image_with_follow_links(message: dict[str, Any]) -> None:
    outcome = classify(response(200, answer(message)), follow_links=True)
    assert (outcome.kind, outcome.images, outcome.image_urls) == (SUCCESS, (), (LINK,))


def test_a_data_image_wins_over_a_link() -> None:
    message = {"images": [image_entry(data_url())], "content": f"![image]({LINK})"}
    outcome = classify(response(200, answer(message)), follow_links=True)
    assert (outcome.images, outcome.image_urls) == (FINAL, ())


def test_a_policy_link_in_a_refusal_is_not_an_image() -> None:
    message = {"content": "I can't. See https://policies.google.com/terms for details."}
    outcome = classify(response(200, answer(message)))
    assert (outcome.kind, outcome.reason) == (REFUSAL, "TEXT_ONLY")


@pytest.mark.parametrize("cost", [-1, "0.5", True, float("inf"), 10**400, None])
def test_a_cost_that_is_not_a_plain_amount_is_ignored(cost: object) -> None:
    body = answer({"images": [image_entry(data_url())]})
    body["usage"]["cost"] = cost
    raw = RawResponse(200, {}, json.dumps(body, allow_nan=True).encode())
    assert classify(raw).usage.cost_usd is None


def test_the_gateway_key_echoed_in_an_error_never_reaches_the_message() -> None:
    leaky = upstream_error(401, "invalid key Bearer sk-or-v1-0123456789abcdefghij")
    outcome = classify(response(401, leaky))
    assert outcome.message is not None
    assert "sk-or-v1-0123" not in outcome.message


# --- arbitrary JSON --------------------------------------------------------------------------

FIELDS = ["choices", "message", "content", "images", "image_url", "url", "type", "text",
          "finish_reason", "native_finish_reason", "refusal", "usage", "cost", "error",
          "code", "metadata", "raw", "message", "promptFeedback", "blockReason"]  # fmt: skip
leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(["prompt_blocked", "content_filter", "error", "stop", data_url(), LINK,
                       "data:image/png;base64,", BLOCKED_ANSWER, "![image](" + LINK + ")",
                       google_error(429, "RESOURCE_EXHAUSTED", "q", RETRY_5S), 429, 402])
)  # fmt: skip
json_values = strategies.json_values(leaves, FIELDS)


parts = json_values | some_of(type=leaves, text=leaves, image_url=some_of(url=leaves) | leaves)
messages = some_of(
    content=leaves | st.lists(parts, max_size=4),
    images=st.lists(parts, max_size=3) | leaves,
    refusal=leaves,
)
answers = some_of(
    choices=st.lists(json_values | some_of(message=messages | leaves, finish_reason=leaves,
                                           native_finish_reason=leaves), max_size=2) | leaves,
    usage=some_of(cost=leaves, prompt_tokens=leaves, completion_tokens=leaves) | leaves,
    error=leaves | some_of(code=leaves, type=leaves, message=leaves,
                           metadata=some_of(raw=leaves) | leaves),
)  # fmt: skip
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(
    body=json_values | answers,
    status=st.integers(min_value=100, max_value=599),
    follow=st.booleans(),
    retry_after=st.none() | st.text(max_size=30),
)
def test_arbitrary_json_never_crashes_the_classifier(
    body: object, status: int, follow: bool, retry_after: str | None
) -> None:
    headers = {} if retry_after is None else {"retry-after": retry_after}
    raw = RawResponse(status, headers, json.dumps(body).encode())
    outcome = classify(raw, now=NOW, follow_links=follow)
    assert isinstance(outcome.kind, OutcomeKind)
    assert outcome.reason
    assert outcome.http_status == status
    assert len(outcome.images) + len(outcome.image_urls) <= 1
    if outcome.kind is SUCCESS:
        assert outcome.images or outcome.image_urls
    assert outcome.usage.cost_usd is None or outcome.usage.cost_usd >= 0
    assert outcome.retry_after_s is None or outcome.retry_after_s >= 0


@SETTINGS
@given(body=st.binary(max_size=200), status=st.integers(min_value=100, max_value=599))
def test_arbitrary_bytes_never_crash_the_classifier(body: bytes, status: int) -> None:
    outcome = classify(RawResponse(status, {}, body), now=NOW)
    assert outcome.reason
    assert outcome.http_status == status
