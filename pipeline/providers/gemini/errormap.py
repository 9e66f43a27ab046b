"""What a failed answer means for its row: Google's mapping of an error code (the HTTP status,
or one a gateway wrapped in a 200 body) and the error body's evidence (``errors.ErrorBody``) to an
``Outcome``, shared by every route whose server relays Google's errors (native, batch, chat).

- 429, or a 5xx whose body says rate-limited -> RATE_LIMIT (per-day quota: QUOTA_EXHAUSTED),
  with the body's RetryInfo delay before the ``Retry-After`` header; a quota of 0 -> NO_QUOTA.
- 408 and other 5xx -> TRANSIENT; 4xx -> a bad key, billing or permission stops the run, an
  unknown model is the model's, anything else is the row's.
- An answer that could not be read -> MALFORMED_RESPONSE, transient (``malformed``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from pipeline.core import jsonread as jr
from pipeline.core.durations import parse_retry_after
from pipeline.core.types import Delivery, Outcome, OutcomeKind, QuotaScope, RawResponse
from pipeline.providers.gemini.errors import ErrorBody

MALFORMED = "MALFORMED_RESPONSE"


def server_failed(outcome: Outcome) -> Outcome:
    """An answer in which the server said it failed (an error status, or a gateway's error
    object in a 2xx body): it did not bill a generation."""
    return replace(outcome, delivery=Delivery.ERROR)


def classify_error(
    code: int, error: ErrorBody, response: RawResponse, now: float | None
) -> Outcome:
    """Map an error code (the HTTP status, or one a gateway wrapped in a 200) to an Outcome.
    Google's mapping: also used for gateways that relay Google's errors (openai_chat)."""
    http = response.status
    if code == 429 or (500 <= code < 600 and error.says_rate_limited):
        if error.zero_quota:
            # A limit of 0 (a free-tier metric on a paid project): waiting cannot help.
            return Outcome(OutcomeKind.MODEL_ERROR, "NO_QUOTA", http, message=error.message)
        scope = _quota_scope(error.quota_ids)
        return Outcome(
            OutcomeKind.RATE_LIMIT,
            "QUOTA_EXHAUSTED" if scope is QuotaScope.DAY else "RATE_LIMITED",
            http_status=http,
            message=error.message,
            retry_after_s=_retry_after(error, response.headers, now),
            quota=scope,
        )
    if code == 408 or 500 <= code < 600:
        return Outcome(
            OutcomeKind.TRANSIENT,
            "TIMEOUT" if code == 408 else f"SERVER_ERROR_{code}",
            http_status=http,
            message=error.message,
            retry_after_s=_retry_after(error, response.headers, now),
        )
    if 400 <= code < 500:
        return _client_error(http, code, error)
    return malformed(http, error.message or f"unexpected HTTP status {code}")


def _client_error(http: int, code: int, error: ErrorBody) -> Outcome:
    # ErrorInfo.reason is the structured signal; the message is consulted only without it.
    bad_key = "API_KEY_INVALID" in error.reasons or (
        not error.reasons and "api key not valid" in (error.message or "").lower()
    )
    if bad_key and code in (400, 401, 403):
        reason = "API_KEY_INVALID"
    elif code == 400 and error.status == "FAILED_PRECONDITION":
        reason = "FAILED_PRECONDITION"  # billing or region: no row can succeed
    elif code == 404:
        # The model (the only name in the URL a row chooses) is unknown at this endpoint.
        return Outcome(OutcomeKind.MODEL_ERROR, "MODEL_NOT_FOUND", http, message=error.message)
    elif code in (401, 403):
        reason = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED"}[code]
    else:
        return Outcome(OutcomeKind.ROW_ERROR, "INVALID_REQUEST", http, message=error.message)
    return Outcome(OutcomeKind.RUN_ERROR, reason, http, message=error.message)


def _quota_scope(quota_ids: Sequence[str]) -> QuotaScope:
    # Normalised so "GenerateRequestsPerDay..." and "requests_per_day" read alike.
    names = [q.lower().replace("_", "").replace("-", "") for q in quota_ids]
    if any("perday" in n for n in names):
        return QuotaScope.DAY  # dominates: waiting out a minute window will not clear it
    if any("perminute" in n for n in names):
        return QuotaScope.MINUTE
    return QuotaScope.UNKNOWN


def _retry_after(error: ErrorBody, headers: dict[str, str], now: float | None) -> float | None:
    # Google puts the delay in the body; the header is what proxies and gateways send.
    if error.retry_delay_s is not None:
        return error.retry_delay_s
    header = headers.get("retry-after")
    return parse_retry_after(header, now=now) if isinstance(header, str) else None


def malformed(http: int, message: str) -> Outcome:
    """An answer that could not be read: transient, since a misread is no evidence of anything."""
    return Outcome(OutcomeKind.TRANSIENT, MALFORMED, http, message=jr.message(message))
