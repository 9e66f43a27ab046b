"""What an error body says, in Google's ``google.rpc.Status`` shape or a gateway's: its code,
status, message, ErrorInfo reasons, QuotaFailure ids and RetryInfo delay; for a body that is not
JSON (an HTML error page, plain text), a short human line from it.

Pure and total: any bytes in, an ``ErrorBody`` (or None) out, never an exception. What the
error means for the row is the classifier's to decide.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from pipeline.core import jsonread as jr
from pipeline.core.durations import parse_retry_delay

_MAX_SNIPPET = 200  # for HTML and plain-text bodies: enough to say what went wrong
_PAGE_HEAD = 65_536  # how much of an error page is looked at for a title or a snippet

_TAG = re.compile(r"<[^<>]*>")  # [^<>] keeps it linear on a page full of stray '<'


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """What an error body says, in Google's ``google.rpc.Status`` shape or a gateway's."""

    code: int | None = None  # error.code: Google's HTTP code, or a gateway's upstream code
    status: str | None = None  # canonical status name, e.g. RESOURCE_EXHAUSTED
    message: str | None = None
    reasons: tuple[str, ...] = ()  # google.rpc.ErrorInfo reasons, e.g. API_KEY_INVALID
    quota_ids: tuple[str, ...] = ()  # QuotaFailure violations' quotaId and quotaMetric
    zero_quota: bool = False  # a QuotaFailure violation whose quotaValue is 0: never met
    retry_delay_s: float | None = None  # google.rpc.RetryInfo.retryDelay

    @property
    def says_rate_limited(self) -> bool:
        return self.code == 429 or self.status == "RESOURCE_EXHAUSTED"


def error_from_bytes(body: bytes) -> ErrorBody:
    if body[:64].lstrip()[:1] in (b"{", b"["):
        try:
            data = jr.loads(body)
        except (ValueError, RecursionError):
            data = None
        error = error_from_json(data)
        if error is not None:
            return error
    return ErrorBody(message=snippet(body))


def error_from_json(data: object) -> ErrorBody | None:
    """Read an error object; None when ``data`` holds none."""
    if isinstance(data, list) and data:
        data = data[0]  # streamGenerateContent wraps its Status in a list
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, str):
        return ErrorBody(message=jr.message(error))
    if not isinstance(error, dict):
        # FastAPI-style {"detail": ...} or a bare {"message": ...}: a message, not a code.
        text = jr.string(data.get("message")) or jr.string(data.get("detail"))
        return ErrorBody(message=jr.message(text)) if text else None
    reasons: list[str] = []
    quota_ids: list[str] = []
    zero_quota = False
    retry_delay: float | None = None
    details = error.get("details")
    for detail in details if isinstance(details, list) else ():
        if not isinstance(detail, dict):
            continue
        kind = jr.string(detail.get("@type")) or ""
        if kind.endswith("google.rpc.ErrorInfo"):
            reasons.extend(r for r in [jr.string(detail.get("reason"))] if r)
        elif kind.endswith("google.rpc.QuotaFailure"):
            violations = detail.get("violations")
            for violation in violations if isinstance(violations, list) else ():
                if isinstance(violation, dict):
                    for key in ("quotaId", "quota_id", "quotaMetric", "quota_metric"):
                        quota_ids.extend(q for q in [jr.string(violation.get(key))] if q)
                    value = jr.get(violation, "quotaValue", "quota_value")
                    zero_quota |= _is_zero(value)
        elif kind.endswith("google.rpc.RetryInfo") and retry_delay is None:
            retry_delay = parse_retry_delay(jr.get(detail, "retryDelay", "retry_delay"))
    return ErrorBody(
        code=jr.integer(error.get("code")),
        status=jr.string(error.get("status")),
        message=jr.message(jr.string(error.get("message")) or jr.string(error.get("type"))),
        reasons=tuple(reasons),
        quota_ids=tuple(quota_ids),
        zero_quota=zero_quota,
        retry_delay_s=retry_delay,
    )


def _is_zero(value: object) -> bool:
    # An int64 in proto3 JSON is a string ("0"); a gateway may send a number.
    if isinstance(value, str):
        return value.strip() == "0"
    return isinstance(value, int | float) and not isinstance(value, bool) and value == 0


def snippet(body: bytes) -> str | None:
    """A short human line from a non-JSON body: an HTML page's title, else its first words."""
    head = body[:_PAGE_HEAD]
    lowered = head.lower()  # bytes.lower() keeps offsets valid, unlike str.lower()
    if head.lstrip()[:1] == b"<":
        start = lowered.find(b"<title")
        open_end = lowered.find(b">", start) if start != -1 else -1
        close = lowered.find(b"</title", open_end) if open_end != -1 else -1
        if close != -1:
            title = jr.squash(html.unescape(head[open_end + 1 : close].decode("utf-8", "replace")))
            if title:
                return jr.message(title, _MAX_SNIPPET)
        text = html.unescape(_TAG.sub(" ", head.decode("utf-8", "replace")))
    else:
        text = head.decode("utf-8", "replace")
    return jr.message(jr.squash(text), _MAX_SNIPPET)
