"""Every response shape in the protocol reference, and the gateways' variants, classified."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.core.durations import parse_retry_after, parse_retry_delay
from pipeline.core.types import (
    ImagePart,
    Outcome,
    OutcomeKind,
    QuotaScope,
    RawResponse,
    TransportFailure,
    Usage,
)
from pipeline.providers.gemini.classify import classify, classify_failure
from tests import strategies
from tests.strategies import some_of

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR-final"
PNG_DRAFT = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR-draft"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF-final"
NOW = 1_445_412_480.0  # Wed, 21 Oct 2015 07:28:00 GMT

SUCCESS, REFUSAL, RATE_LIMIT = OutcomeKind.SUCCESS, OutcomeKind.REFUSAL, OutcomeKind.RATE_LIMIT
TRANSIENT, ROW_ERROR, RUN_ERROR, MODEL_ERROR = (
    OutcomeKind.TRANSIENT,
    OutcomeKind.ROW_ERROR,
    OutcomeKind.RUN_ERROR,
    OutcomeKind.MODEL_ERROR,
)
IMAGE_SAFETY_MESSAGE = (
    "Unable to show the generated image. The image was filtered out because it violated "
    "Google's Generative AI Prohibited Use policy. You will not be charged for blocked images."
)


# --- body builders --------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def image(data: bytes = PNG, mime: str = "image/png", **extra: Any) -> dict[str, Any]:
    return {"inlineData": {"mimeType": mime, "data": b64(data)}, **extra}


def text(value: str, **extra: Any) -> dict[str, Any]:
    return {"text": value, **extra}


def candidate(*parts: dict[str, Any], finish: str | None = "STOP", **extra: Any) -> dict[str, Any]:
    content: dict[str, Any] = {"role": "model"}
    if parts:
        content["parts"] = list(parts)
    body: dict[str, Any] = {"content": content, "index": 0, **extra}
    if finish is not None:
        body["finishReason"] = finish
    return body


def generation(*candidates: dict[str, Any], output: int | None = 1120) -> dict[str, Any]:
    usage: dict[str, Any] = {"promptTokenCount": 12, "thoughtsTokenCount": 155}
    if output is not None:
        usage["candidatesTokenCount"] = output
    return {
        "candidates": list(candidates),
        "usageMetadata": usage,
        "modelVersion": "gemini-3.1-flash-image-preview",
        "responseId": "UloxaY6yCIq4694Pi-TTmAk",
    }


def blocked(reason: str) -> dict[str, Any]:
    return {
        "promptFeedback": {"blockReason": reason},
        "usageMetadata": {"promptTokenCount": 13, "totalTokenCount": 13},
        "modelVersion": "gemini-3-pro-image-preview",
    }


def google_error(code: int, status: str, message: str, *details: dict[str, Any]) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = list(details)
    return {"error": error}


FREE_TIER_METRIC = "generativelanguage.googleapis.com/generate_content_free_tier_requests"


def quota_failure(*quota_ids: str, value: object = "10") -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [
            {
                "quotaMetric": FREE_TIER_METRIC,
                "quotaId": quota_id,
                "quotaValue": value,
            }
            for quota_id in quota_ids
        ],
    }


def retry_info(delay: str) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}


def error_info(reason: str) -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": "googleapis.com",
    }


def gateway_error(message: str, code: int | str, kind: str = "upstream_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": code}}


def html_page(title: str) -> bytes:
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>"
    ).encode()


def response(status: int, body: object, headers: dict[str, str] | None = None) -> RawResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return RawResponse(status=status, headers=headers or {}, body=raw)


QUOTA_MESSAGE = "You exceeded your current quota, please check your plan and billing details."
PER_MINUTE = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
PER_DAY = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
OVERLOADED = "The model is overloaded. Please try again later."


def quota_429(*details: dict[str, Any], headers: dict[str, str] | None = None) -> RawResponse:
    """Google's 429 with its quota message and these ``details``."""
    return response(429, google_error(429, "RESOURCE_EXHAUSTED", QUOTA_MESSAGE, *details), headers)


MODEL_404 = (
    "models/gemini-9-image is not found for API version v1beta, or is not supported for "
    "generateContent. Call ListModels to see the list of available models."
)
BAD_SIZE = "* GenerateContentRequest.generation_config.image_config.image_size: invalid value 1k"


# --- the table --------------------------------------------------------------------------------

Expected = dict[str, object]


def case(raw: RawResponse, kind: OutcomeKind, reason: str, id: str, **fields: object) -> Any:
    return pytest.param(raw, {"kind": kind, "reason": reason, **fields}, id=id)


SHAPES = [
    # Successes
    case(
        response(
            200,
            generation(
                candidate(
                    text("Planning the composition...", thought=True),
                    image(PNG_DRAFT, thought=True),
                    image(PNG, thoughtSignature="EqCz..."),
                    text("Here is your image."),
                )
            ),
        ),
        SUCCESS,
        "STOP",
        "success-thought-parts-ignored",
        images=(ImagePart(PNG, "image/png"),),
        text="Here is your image.",
        usage=Usage(prompt_tokens=12, output_tokens=1120, thoughts_tokens=155),
        model_version="gemini-3.1-flash-image-preview",
        response_id="UloxaY6yCIq4694Pi-TTmAk",
        http_status=200,
    ),
    case(
        response(200, generation(candidate(image(PNG), text("and"), image(JPEG, "image/jpeg")))),
        SUCCESS,
        "STOP",
        "success-several-images-in-order",
        images=(ImagePart(PNG, "image/png"), ImagePart(JPEG, "image/jpeg")),
        text="and",
    ),
    case(
        response(
            200,
            {
                "candidates": [
                    candidate({"inline_data": {"mime_type": "image/png", "data": b64(PNG)}})
                ]
            },
        ),
        SUCCESS,
        "STOP",
        "success-snake-case-inline-data",
        images=(ImagePart(PNG, "image/png"),),
    ),
    case(
        response(200, generation(candidate(text(f"data:image/png;base64,{b64(PNG)}")))),
        SUCCESS,
        "STOP",
        "success-data-uri-in-text",
        images=(ImagePart(PNG, "image/png"),),
        text=None,
    ),
    case(
        response(
            200,
            generation(
                candidate(
                    text(f"Here you go:\n![image](data:image/jpeg;base64,{b64(JPEG)})\nEnjoy")
                )
            ),
        ),
        SUCCESS,
        "STOP",
        "success-markdown-data-uri",
        images=(ImagePart(JPEG, "image/jpeg"),),
        text="Here you go:\n\nEnjoy",
    ),
    case(
        response(200, generation(candidate(text("![image](https://cdn.example.com/out/abc123)")))),
        REFUSAL,
        "TEXT_ONLY",
        "markdown-url-in-text-is-text-unless-links-are-followed",
        images=(),
        image_urls=(),
    ),
    case(
        response(
            200,
            generation(
                candidate(
                    text(
                        "Done: https://cdn.example.com/a.png?sig=1. "
                        "Policy: https://policies.google.com/terms"
                    )
                )
            ),
        ),
        REFUSAL,
        "TEXT_ONLY",
        "plain-image-url-in-text-is-text-unless-links-are-followed",
        image_urls=(),
    ),
    case(
        response(200, generation(candidate(image(PNG), text("https://cdn.example.com/b.png")))),
        SUCCESS,
        "STOP",
        "success-inline-image-wins-over-url",
        images=(ImagePart(PNG, "image/png"),),
        image_urls=(),
    ),
    case(
        response(200, generation(candidate(image(PNG), finish="MAX_TOKENS"), output=0)),
        SUCCESS,
        "MAX_TOKENS",
        "success-image-kept-despite-odd-finish-and-counts",
        images=(ImagePart(PNG, "image/png"),),
    ),
    case(
        response(200, generation(candidate(image(PNG), finish=None))),
        SUCCESS,
        "STOP",
        "success-no-finish-reason",
    ),
    case(
        response(200, generation(candidate(image(PNG, "application/octet-stream")))),
        SUCCESS,
        "STOP",
        "success-octet-stream-mime-sniffed",
        images=(ImagePart(PNG, "image/png"),),
    ),
    case(
        response(
            200,
            generation(candidate({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo"}})),
        ),
        SUCCESS,
        "STOP",
        "success-unpadded-base64",
        images=(ImagePart(b"\x89PNG\r\n\x1a\n", "image/png"),),
    ),
    case(
        response(
            200, generation(candidate(image(PNG), {"inlineData": {"data": "!!not base64!!"}}))
        ),
        SUCCESS,
        "STOP",
        "success-good-image-kept-beside-a-bad-one",
        images=(ImagePart(PNG, "image/png"),),
        message="image data is missing or not valid base64",
    ),
    # Prompt blocked
    *[
        case(
            response(200, blocked(reason)),
            REFUSAL,
            f"PROMPT_BLOCKED:{reason}",
            f"prompt-blocked-{reason}",
            usage=Usage(prompt_tokens=13),
            model_version="gemini-3-pro-image-preview",
        )
        for reason in (
            "SAFETY",
            "OTHER",
            "BLOCKLIST",
            "PROHIBITED_CONTENT",
            "IMAGE_SAFETY",
            "MODEL_ARMOR",
            "JAILBREAK",
        )
    ],
    case(
        response(200, {"promptFeedback": {"safetyRatings": []}, "candidates": []}),
        REFUSAL,
        "PROMPT_BLOCKED:BLOCKED_REASON_UNSPECIFIED",
        "prompt-feedback-without-reason",
    ),
    # Image refused
    case(
        response(
            200,
            {
                "candidates": [
                    {
                        "content": {"role": "model"},
                        "finishReason": "IMAGE_SAFETY",
                        "index": 0,
                        "finishMessage": IMAGE_SAFETY_MESSAGE,
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": 464,
                    "candidatesTokenCount": 0,
                    "thoughtsTokenCount": 291,
                    "totalTokenCount": 755,
                },
            },
        ),
        REFUSAL,
        "IMAGE_SAFETY",
        "image-safety-zero-candidate-tokens",
        message=IMAGE_SAFETY_MESSAGE,
        usage=Usage(prompt_tokens=464, output_tokens=0, thoughts_tokens=291),
    ),
    *[
        case(
            response(200, generation(candidate(finish=reason), output=None)),
            REFUSAL,
            reason,
            f"finish-{reason}",
            images=(),
        )
        for reason in (
            "IMAGE_PROHIBITED_CONTENT",
            "IMAGE_RECITATION",
            "IMAGE_OTHER",
            "SAFETY",
            "PROHIBITED_CONTENT",
            "RECITATION",
            "BLOCKLIST",
            "SPII",
            "NO_IMAGE",
            "MAX_TOKENS",
            "OTHER",
            "SOMETHING_NEW_2027",
        )
    ],
    case(
        response(200, generation(candidate(text("Sorry, no."), finish="recitation"))),
        REFUSAL,
        "RECITATION",
        "finish-reason-case-insensitive-text-kept",
        text="Sorry, no.",
    ),
    case(
        response(200, generation(candidate(text("I can't remove watermarks.")), output=42)),
        REFUSAL,
        "TEXT_ONLY",
        "text-only-stop",
        text="I can't remove watermarks.",
        usage=Usage(prompt_tokens=12, output_tokens=42, thoughts_tokens=155),
    ),
    case(
        response(200, generation(candidate(text("Drafting...", thought=True)), output=0)),
        REFUSAL,
        "NO_IMAGE",
        "stop-zero-candidate-tokens-only-thoughts",
        text=None,
    ),
    case(
        response(200, generation(candidate(text("I would rather not.")), output=0)),
        REFUSAL,
        "NO_IMAGE",
        "stop-zero-candidate-tokens-wins-over-text-only",
        text="I would rather not.",
    ),
    case(
        response(200, generation(candidate(image(PNG_DRAFT, thought=True)), output=None)),
        REFUSAL,
        "NO_IMAGE",
        "only-thought-image-is-no-image",
        images=(),
    ),
    case(
        response(200, {"candidates": [{}]}),
        REFUSAL,
        "NO_IMAGE",
        "empty-candidate",
    ),
    # 429
    case(
        quota_429(
            quota_failure(PER_MINUTE),
            {"@type": "type.googleapis.com/google.rpc.Help", "links": []},
            retry_info("31s"),
        ),
        RATE_LIMIT,
        "RATE_LIMITED",
        "429-per-minute-with-retry-info",
        retry_after_s=31.0,
        quota=QuotaScope.MINUTE,
        message=QUOTA_MESSAGE,
        http_status=429,
    ),
    case(
        quota_429(quota_failure(PER_DAY), retry_info("1.5s"), headers={"retry-after": "99"}),
        RATE_LIMIT,
        "QUOTA_EXHAUSTED",
        "429-per-day-body-delay-beats-header",
        retry_after_s=1.5,
        quota=QuotaScope.DAY,
    ),
    case(
        quota_429(quota_failure(PER_MINUTE, PER_DAY)),
        RATE_LIMIT,
        "QUOTA_EXHAUSTED",
        "429-per-day-dominates-per-minute",
        retry_after_s=None,
        quota=QuotaScope.DAY,
    ),
    case(
        quota_429(quota_failure(PER_MINUTE, value="0")),
        MODEL_ERROR,
        "NO_QUOTA",
        "429-quota-value-0-can-never-be-met",
        retry_after_s=None,
        quota=None,
        message=QUOTA_MESSAGE,
    ),
    case(
        quota_429(quota_failure(PER_DAY, value=0), retry_info("20s")),
        MODEL_ERROR,
        "NO_QUOTA",
        "429-quota-value-0-as-a-number-even-with-retry-info",
    ),
    case(
        quota_429(quota_failure(PER_MINUTE, value=False)),
        RATE_LIMIT,
        "RATE_LIMITED",
        "429-quota-value-false-is-not-zero",
    ),
    case(
        response(429, b"", {"retry-after": "7"}),
        RATE_LIMIT,
        "RATE_LIMITED",
        "429-retry-after-seconds",
        retry_after_s=7.0,
        quota=QuotaScope.UNKNOWN,
        message=None,
    ),
    case(
        response(429, b"Too Many Requests", {"retry-after": "Wed, 21 Oct 2015 07:28:30 GMT"}),
        RATE_LIMIT,
        "RATE_LIMITED",
        "429-retry-after-http-date",
        retry_after_s=30.0,
        message="Too Many Requests",
    ),
    case(
        response(429, gateway_error("Upstream load is saturated", 429)),
        RATE_LIMIT,
        "RATE_LIMITED",
        "429-gateway-shape",
        quota=QuotaScope.UNKNOWN,
        message="Upstream load is saturated",
    ),
    case(
        response(200, gateway_error("Upstream load is saturated", "429"), {"retry-after": "3"}),
        RATE_LIMIT,
        "RATE_LIMITED",
        "gateway-429-inside-200",
        retry_after_s=3.0,
        http_status=200,
    ),
    case(
        response(502, gateway_error("Upstream load is saturated", 429)),
        RATE_LIMIT,
        "RATE_LIMITED",
        "gateway-429-inside-502",
        http_status=502,
    ),
    case(
        response(503, [google_error(429, "RESOURCE_EXHAUSTED", QUOTA_MESSAGE, retry_info("2s"))]),
        RATE_LIMIT,
        "RATE_LIMITED",
        "429-status-list-wrapped-inside-503",
        retry_after_s=2.0,
    ),
    # 5xx and 408
    case(
        response(500, google_error(500, "INTERNAL", "An internal error has occurred.")),
        TRANSIENT,
        "SERVER_ERROR_500",
        "500-google",
        message="An internal error has occurred.",
    ),
    case(
        response(503, google_error(503, "UNAVAILABLE", OVERLOADED), {"retry-after": "5"}),
        TRANSIENT,
        "SERVER_ERROR_503",
        "503-google-overloaded",
        message=OVERLOADED,
        retry_after_s=5.0,
    ),
    case(
        response(504, google_error(504, "DEADLINE_EXCEEDED", "Deadline expired.")),
        TRANSIENT,
        "SERVER_ERROR_504",
        "504-google",
    ),
    case(
        response(502, html_page("502 Bad Gateway")),
        TRANSIENT,
        "SERVER_ERROR_502",
        "502-html-title",
        message="502 Bad Gateway",
    ),
    case(
        response(503, b"<html><body><h1>Service  Unavailable</h1><p>try &amp; retry</p></body>"),
        TRANSIENT,
        "SERVER_ERROR_503",
        "503-html-without-title",
        message="Service Unavailable try & retry",
    ),
    *[
        case(response(code, b""), TRANSIENT, f"SERVER_ERROR_{code}", f"{code}-empty", message=None)
        for code in (500, 502, 503, 504, 507, 599)
    ],
    *[
        case(response(code, html_page(title)), TRANSIENT, f"SERVER_ERROR_{code}", f"{code}-html")
        for code, title in [
            (500, "500 Internal Server Error"),
            (503, "503 Service Temporarily Unavailable"),
            (504, "504 Gateway Time-out"),
        ]
    ],
    case(
        response(500, gateway_error("not supported model for image generation", 500, "new_api")),
        TRANSIENT,
        "SERVER_ERROR_500",
        "500-gateway-wrong-endpoint",
        message="not supported model for image generation",
    ),
    case(response(408, b""), TRANSIENT, "TIMEOUT", "408", http_status=408),
    # 4xx about the row
    case(
        response(400, google_error(400, "INVALID_ARGUMENT", BAD_SIZE)),
        ROW_ERROR,
        "INVALID_REQUEST",
        "400-invalid-argument-message-kept",
        message=BAD_SIZE,
    ),
    case(
        response(413, b"<html><title>413 Request Entity Too Large</title></html>"),
        ROW_ERROR,
        "INVALID_REQUEST",
        "413",
        message="413 Request Entity Too Large",
    ),
    case(response(422, {"detail": "bad field"}), ROW_ERROR, "INVALID_REQUEST", "422-detail"),
    case(response(418, b"teapot"), ROW_ERROR, "INVALID_REQUEST", "unknown-4xx", message="teapot"),
    # 4xx about the run
    case(
        response(
            400,
            google_error(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                error_info("API_KEY_INVALID"),
            ),
        ),
        RUN_ERROR,
        "API_KEY_INVALID",
        "400-api-key-invalid",
        message="API key not valid. Please pass a valid API key.",
    ),
    case(
        response(400, gateway_error("API key not valid.", 400, "invalid_request_error")),
        RUN_ERROR,
        "API_KEY_INVALID",
        "400-api-key-invalid-by-message-without-error-info",
    ),
    case(
        response(
            400,
            google_error(
                400,
                "FAILED_PRECONDITION",
                "User location is not supported for the API use.",
            ),
        ),
        RUN_ERROR,
        "FAILED_PRECONDITION",
        "400-failed-precondition",
        message="User location is not supported for the API use.",
    ),
    case(
        response(401, google_error(401, "UNAUTHENTICATED", "Request had invalid credentials.")),
        RUN_ERROR,
        "UNAUTHENTICATED",
        "401",
    ),
    case(
        response(403, google_error(403, "PERMISSION_DENIED", "Permission denied.")),
        RUN_ERROR,
        "PERMISSION_DENIED",
        "403",
        message="Permission denied.",
    ),
    case(
        response(404, google_error(404, "NOT_FOUND", MODEL_404)),
        MODEL_ERROR,
        "MODEL_NOT_FOUND",
        "404-model",
        message=MODEL_404,
    ),
    case(
        response(200, gateway_error("Invalid token", 401, "auth_error")),
        RUN_ERROR,
        "UNAUTHENTICATED",
        "gateway-401-inside-200",
        http_status=200,
    ),
    # Malformed 2xx and odd statuses
    case(
        response(200, json.dumps(generation(candidate(image(PNG)))).encode()[:90]),
        TRANSIENT,
        "MALFORMED_RESPONSE",
        "truncated-json",
    ),
    case(
        response(200, b"<html><title>Captive portal</title></html>"),
        TRANSIENT,
        "MALFORMED_RESPONSE",
        "200-html",
        message="body is not valid JSON (42 bytes): Captive portal",
    ),
    case(response(200, b"OK"), TRANSIENT, "MALFORMED_RESPONSE", "200-plain-text"),
    case(response(200, b""), TRANSIENT, "MALFORMED_RESPONSE", "200-empty"),
    case(response(204, b""), TRANSIENT, "MALFORMED_RESPONSE", "204-empty"),
    case(response(200, {}), TRANSIENT, "MALFORMED_RESPONSE", "200-empty-object"),
    case(response(200, {"candidates": []}), TRANSIENT, "MALFORMED_RESPONSE", "200-no-candidates"),
    case(response(200, [generation()]), TRANSIENT, "MALFORMED_RESPONSE", "200-json-list"),
    case(response(200, "STOP"), TRANSIENT, "MALFORMED_RESPONSE", "200-json-string"),
    case(
        response(
            200, generation(candidate({"inlineData": {"mimeType": "image/png", "data": "@@"}}))
        ),
        TRANSIENT,
        "MALFORMED_RESPONSE",
        "bad-base64",
        images=(),
    ),
    case(
        response(200, generation(candidate(text("data:image/png;base64,@@@")))),
        TRANSIENT,
        "MALFORMED_RESPONSE",
        "bad-base64-in-data-uri",
    ),
    case(
        response(200, generation(candidate({"inlineData": {"mimeType": "image/png", "data": ""}}))),
        TRANSIENT,
        "MALFORMED_RESPONSE",
        "empty-image-data",
    ),
    case(
        response(200, {"candidates": "yes"}),
        TRANSIENT,
        "MALFORMED_RESPONSE",
        "candidates-not-a-list",
    ),
    case(
        response(200, {"candidates": [{"content": {"parts": [None, 3]}, "finishReason": "STOP"}]}),
        TRANSIENT,
        "MALFORMED_RESPONSE",
        "parts-not-objects",
    ),
    case(
        response(200, {"candidates": [{"content": "a picture", "finishReason": "STOP"}]}),
        TRANSIENT,
        "MALFORMED_RESPONSE",
        "content-not-an-object",
    ),
    case(
        response(200, {"promptFeedback": "blocked"}),
        TRANSIENT,
        "MALFORMED_RESPONSE",
        "prompt-feedback-not-an-object",
    ),
    case(response(302, b""), TRANSIENT, "MALFORMED_RESPONSE", "3xx"),
    case(response(101, b""), TRANSIENT, "MALFORMED_RESPONSE", "1xx"),
    case(response(799, b"?"), TRANSIENT, "MALFORMED_RESPONSE", "status-out-of-range"),
]


@pytest.mark.parametrize(("raw", "expected"), SHAPES)
def test_response_shapes_classify_as_expected(raw: RawResponse, expected: Expected) -> None:
    outcome = classify(raw, now=NOW)
    assert {name: getattr(outcome, name) for name in expected} == expected


# --- behaviour beyond the table --------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "reason"),
    [(TransportFailure.TIMEOUT, "TIMEOUT"), (TransportFailure.CONNECTION, "CONNECTION")],
)
def test_transport_failures_are_transient(failure: TransportFailure, reason: str) -> None:
    outcome = classify_failure(failure, "ReadTimeout: timed out")
    assert (outcome.kind, outcome.reason, outcome.http_status) == (TRANSIENT, reason, None)
    assert outcome.message == "ReadTimeout: timed out"


@pytest.mark.parametrize(
    "leaky",
    [
        "API key not valid: AIzaSyA1234567890abcdefghijklmnopqrstuv",
        "bad credentials Bearer sk-live-0123456789abcdefghij",
        "GET https://example.com/v1beta/models/x:generateContent?key=secret123 failed",
    ],
)
def test_credentials_echoed_by_a_gateway_never_reach_the_message(leaky: str) -> None:
    outcome = classify(response(401, {"error": {"message": leaky, "code": 401}}))
    assert outcome.message is not None
    for secret in ("AIzaSyA1234567890", "sk-live-0123", "secret123"):
        assert secret not in outcome.message
    failure = classify_failure(TransportFailure.CONNECTION, leaky)
    assert failure.message is not None
    assert "AIzaSyA1234567890" not in failure.message
    assert "secret123" not in failure.message


def test_html_message_is_short() -> None:
    page = b"<html><body>" + b"<p>word</p>" * 10_000 + b"</body></html>"
    outcome = classify(response(502, page))
    assert outcome.message is not None
    assert len(outcome.message) <= 200
    assert "<" not in outcome.message


def test_data_uri_payload_is_not_kept_in_text() -> None:
    payload = b64(PNG * 50)
    outcome = classify(
        response(200, generation(candidate(text(f"![x](data:image/png;base64,{payload})"))))
    )
    assert outcome.kind is SUCCESS
    assert outcome.images == (ImagePart(PNG * 50, "image/png"),)
    assert outcome.text is None


def test_http_date_retry_after_in_the_past_means_now() -> None:
    headers = {"retry-after": "Wed, 21 Oct 2015 07:27:00 GMT"}
    assert classify(response(429, b"", headers), now=NOW).retry_after_s == 0.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("31s", 31.0),
        ("1.5s", 1.5),
        ("0.250s", 0.25),
        (" 2s ", 2.0),
        ({"seconds": "3", "nanos": 500_000_000}, 3.5),
        ("31", None),
        ("-1s", None),
        ("1e3s", None),
        ("infs", None),
        ("9" * 400 + "s", None),
        (31, None),
        (None, None),
    ],
)
def test_parse_retry_delay(value: object, seconds: float | None) -> None:
    assert parse_retry_delay(value) == seconds


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        ("1.5", 1.5),
        ("Wed, 21 Oct 2015 07:29:00 GMT", 60.0),
        ("Wed, 21 Oct 2015 07:29:00 -0000", 60.0),
        ("-5", None),
        ("soon", None),
        ("", None),
    ],
)
def test_parse_retry_after(value: str, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


# --- properties ------------------------------------------------------------------------------

FIELD_NAMES = [
    "candidates", "content", "parts", "inlineData", "inline_data", "mimeType", "mime_type",
    "data", "text", "thought", "finishReason", "finishMessage", "usageMetadata",
    "candidatesTokenCount", "promptFeedback", "blockReason", "fileData", "fileUri", "error",
    "code", "status", "message", "details", "@type", "violations", "quotaId", "retryDelay",
]  # fmt: skip
INTERESTING_STRINGS = [
    "STOP", "IMAGE_SAFETY", "SOMETHING_NEW_2027", "image/png", "application/octet-stream",
    b64(PNG), "@@", "", "31s", "429", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "API_KEY_INVALID", "GenerateRequestsPerDay", "type.googleapis.com/google.rpc.RetryInfo",
    "type.googleapis.com/google.rpc.QuotaFailure", "type.googleapis.com/google.rpc.ErrorInfo",
    f"data:image/png;base64,{b64(PNG)}", "![i](data:image/png;base64,@@)", "data:image/",
    "![x](https://a.example/i)", "https://a.example/i.png", "](", "true",
]  # fmt: skip

leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([0, 200, 400, 401, 404, 429, 500, 503])
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(INTERESTING_STRINGS)
)
json_values = strategies.json_values(leaves, FIELD_NAMES)


blobs = some_of(mimeType=leaves, mime_type=leaves, data=leaves)
parts = json_values | some_of(
    inlineData=blobs | leaves,
    inline_data=blobs,
    text=leaves,
    thought=leaves,
    fileData=some_of(fileUri=leaves, mimeType=leaves),
)
candidates = json_values | some_of(
    content=leaves | some_of(parts=st.lists(parts, max_size=4) | leaves),
    finishReason=leaves,
    finishMessage=leaves,
)
details = some_of(
    **{"@type": leaves, "retryDelay": json_values, "reason": leaves},
    violations=st.lists(some_of(quotaId=leaves, quotaMetric=leaves, quotaValue=leaves), max_size=2)
    | leaves,
)
response_like = some_of(
    candidates=st.lists(candidates, max_size=3) | leaves,
    promptFeedback=some_of(blockReason=leaves) | leaves,
    usageMetadata=some_of(candidatesTokenCount=leaves, promptTokenCount=leaves) | leaves,
    error=leaves | some_of(code=leaves, status=leaves, message=leaves, details=st.lists(details)),
)
statuses = st.integers(min_value=100, max_value=599)
headers = st.dictionaries(st.sampled_from(["retry-after", "content-type"]), st.text(max_size=40))
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_well_formed(outcome: Outcome, status: int) -> None:
    assert isinstance(outcome.kind, OutcomeKind)
    assert isinstance(outcome.reason, str)
    assert outcome.reason
    assert outcome.http_status == status
    assert all(part.data for part in outcome.images)
    if outcome.kind is SUCCESS:
        assert outcome.images or outcome.image_urls
    if outcome.retry_after_s is not None:
        assert outcome.retry_after_s >= 0


@SETTINGS
@given(body=json_values | response_like, status=statuses, header_values=headers)
def test_arbitrary_json_never_raises(
    body: object, status: int, header_values: dict[str, str]
) -> None:
    raw = RawResponse(status, header_values, json.dumps(body).encode())
    assert_well_formed(classify(raw, now=NOW), status)


@SETTINGS
@given(body=st.binary(max_size=200), status=statuses, header_values=headers)
def test_arbitrary_bytes_never_raise(
    body: bytes, status: int, header_values: dict[str, str]
) -> None:
    assert_well_formed(classify(RawResponse(status, header_values, body), now=NOW), status)


@SETTINGS
@given(
    finish=st.none() | st.text(max_size=20) | st.sampled_from(["STOP", "IMAGE_SAFETY", "OTHER"]),
    output=st.none() | st.integers(min_value=0, max_value=5000),
    extra=st.lists(
        st.sampled_from([text("x"), text("d", thought=True), image(JPEG, thought=True)])
    ),
    blocked_too=st.booleans(),
)
def test_a_received_image_is_never_thrown_away(
    finish: str | None, output: int | None, extra: list[dict[str, Any]], blocked_too: bool
) -> None:
    body = generation(candidate(*extra, image(PNG), finish=finish), output=output)
    if blocked_too:
        body["promptFeedback"] = {"blockReason": "SAFETY"}
    outcome = classify(response(200, body))
    assert outcome.kind is SUCCESS
    assert outcome.images == (ImagePart(PNG, "image/png"),)
    assert outcome.reason == ((finish or "").strip().upper() or "STOP")[:200]


@SETTINGS
@given(value=st.text(max_size=80) | json_values)
def test_duration_parsers_are_total(value: object) -> None:
    delay = parse_retry_delay(value)
    assert delay is None or delay >= 0
    if isinstance(value, str):
        after = parse_retry_after(value, now=NOW)
        assert after is None or after >= 0
