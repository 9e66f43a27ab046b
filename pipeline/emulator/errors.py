"""Google's error bodies: ``{"error": {code, message, status, details}}``, in its own words.

Each builder returns an ``ApiError`` value; ``ApiError.body()`` renders it the way Google's
front end does (pretty-printed JSON).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

TYPE_PREFIX = "type.googleapis.com/google.rpc."
TROUBLESHOOTING = "https://developers.generativeai.google/guide/troubleshooting"


@dataclass(frozen=True, slots=True)
class ApiError:
    """An error answer: HTTP code, canonical status, message and ``details`` entries."""

    code: int
    status: str
    message: str
    details: tuple[dict[str, object], ...] = ()

    def body(self) -> bytes:
        error: dict[str, object] = {
            "code": self.code,
            "message": self.message,
            "status": self.status,
        }
        if self.details:
            error["details"] = list(self.details)
        return json.dumps({"error": error}, indent=2).encode()


def invalid_argument(message: str, field: str | None = None) -> ApiError:
    """A 400 about the request; ``field`` adds the BadRequest field violation Google attaches
    (``""``: a violation of the request as a whole, without a field path)."""
    details: tuple[dict[str, object], ...] = ()
    if field is not None:
        violation = {"field": field, "description": message} if field else {"description": message}
        details = ({"@type": TYPE_PREFIX + "BadRequest", "fieldViolations": [violation]},)
    return ApiError(400, "INVALID_ARGUMENT", message, details)


def api_key_invalid() -> ApiError:
    message = "API key not valid. Please pass a valid API key."
    return ApiError(
        400,
        "INVALID_ARGUMENT",
        message,
        (
            {
                "@type": TYPE_PREFIX + "ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {"@type": TYPE_PREFIX + "LocalizedMessage", "locale": "en-US", "message": message},
        ),
    )


def unregistered_caller() -> ApiError:
    """What the Gemini API says to a request without any key."""
    return ApiError(
        403,
        "PERMISSION_DENIED",
        "Method doesn't allow unregistered callers (callers without established identity). "
        "Please use API Key or other form of API consumer identity to call this API.",
    )


def vertex_unauthenticated(*, missing: bool) -> ApiError:
    """Vertex AI's 401 for a missing (or, with ``--api-key``, a wrong) bearer token."""
    if missing:
        message = (
            "Request is missing required authentication credential. Expected OAuth 2 access "
            "token, login cookie or other valid authentication credential. See "
            "https://developers.google.com/identity/sign-in/web/devconsole-project."
        )
        reason = "CREDENTIALS_MISSING"
    else:
        message = (
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
            "cookie or other valid authentication credential. See "
            "https://developers.google.com/identity/sign-in/web/devconsole-project."
        )
        reason = "ACCESS_TOKEN_TYPE_UNSUPPORTED"
    info: dict[str, object] = {
        "@type": TYPE_PREFIX + "ErrorInfo",
        "reason": reason,
        "domain": "googleapis.com",
        "metadata": {"service": "aiplatform.googleapis.com"},
    }
    return ApiError(401, "UNAUTHENTICATED", message, (info,))


def model_not_found(model: str, version: str, vertex_name: str | None) -> ApiError:
    if vertex_name is not None:
        return ApiError(
            404,
            "NOT_FOUND",
            f"Publisher Model `{vertex_name}` was not found or your project does not have access "
            "to it. Please ensure you are using a valid model version. For more information, see: "
            "https://cloud.google.com/vertex-ai/generative-ai/docs/learn/model-versions",
        )
    return ApiError(
        404,
        "NOT_FOUND",
        f"models/{model} is not found for API version {version}, or is not supported for "
        "generateContent. Call ListModels to see the list of available models and their "
        "supported methods.",
    )


def route_not_found() -> ApiError:
    return ApiError(404, "NOT_FOUND", "Requested entity was not found.")


def format_duration(seconds: float) -> str:
    """A protobuf Duration in JSON form, as RetryInfo carries it ("31s", "0.5s")."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds:.3f}".rstrip("0") + "s"


_QUOTA_PREAMBLE = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. "
    "To monitor your current usage, head to: https://ai.dev/rate-limit. \n"
)


def quota_exhausted(
    *, model: str, retry_delay_s: float, per_day: bool, limit: int, exact_delay_s: float
) -> ApiError:
    """A 429 with QuotaFailure, Help and RetryInfo, like the Gemini API's.

    ``retry_delay_s`` goes into RetryInfo; the message says the unrounded ``exact_delay_s``
    the way Google's does ("Please retry in 31.479813488s.").
    """
    if per_day:
        metric = "generativelanguage.googleapis.com/generate_requests_per_model_per_day"
        quota_id = "GenerateRequestsPerDayPerProjectPerModel"
    else:
        metric = "generativelanguage.googleapis.com/generate_requests_per_model"
        quota_id = "GenerateRequestsPerMinutePerProjectPerModel"
    message = (
        f"{_QUOTA_PREAMBLE}* Quota exceeded for metric: {metric}, limit: {limit}, model: {model}\n"
        f"Please retry in {exact_delay_s:.6f}s."
    )
    retry: dict[str, object] = {
        "@type": TYPE_PREFIX + "RetryInfo",
        "retryDelay": format_duration(retry_delay_s),
    }
    return _quota_error(
        message, metric=metric, quota_id=quota_id, model=model, limit=limit, extra=(retry,)
    )


def no_quota(*, model: str) -> ApiError:
    """The 429 of a quota whose limit is 0, e.g. a free-tier metric on a paid project: it looks
    like a per-minute limit, but carries no RetryInfo, and waiting never helps."""
    metric = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
    message = f"{_QUOTA_PREAMBLE}* Quota exceeded for metric: {metric}, limit: 0, model: {model}"
    quota_id = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
    return _quota_error(message, metric=metric, quota_id=quota_id, model=model, limit=0, extra=())


def _quota_error(
    message: str,
    *,
    metric: str,
    quota_id: str,
    model: str,
    limit: int,
    extra: tuple[dict[str, object], ...],
) -> ApiError:
    """A RESOURCE_EXHAUSTED error with Google's QuotaFailure and Help details, then ``extra``."""
    violation = {
        "quotaMetric": metric,
        "quotaId": quota_id,
        "quotaDimensions": {"location": "global", "model": model},
        "quotaValue": str(limit),
    }
    help_link = {
        "description": "Learn more about Gemini API quotas",
        "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
    }
    details: tuple[dict[str, object], ...] = (
        {"@type": TYPE_PREFIX + "QuotaFailure", "violations": [violation]},
        {"@type": TYPE_PREFIX + "Help", "links": [help_link]},
        *extra,
    )
    return ApiError(429, "RESOURCE_EXHAUSTED", message, details)


def whole_seconds(seconds: float) -> float:
    """Round a wait up to whole seconds, as RetryInfo delays are usually given."""
    return float(max(1, math.ceil(seconds - 1e-9)))


def internal() -> ApiError:
    return ApiError(
        500,
        "INTERNAL",
        f"An internal error has occurred. Please retry or report in {TROUBLESHOOTING}",
    )


def overloaded() -> ApiError:
    return ApiError(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")


def deadline_exceeded() -> ApiError:
    return ApiError(504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete.")
