"""Parse durations: the delays a server asks a client to wait (protobuf Durations and
``Retry-After``), and the spans a person types on the command line (``7h``, ``1h30m``, ``90s``).

Pure and total: anything unusable yields ``None`` ("the server did not say", "not a duration"),
never an exception, never a negative, infinite or NaN delay.
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC
from email.utils import parsedate_to_datetime

# google.protobuf.Duration in JSON form: decimal seconds with an "s" suffix ("31s", "0.250s").
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)s", re.ASCII)
# Retry-After delta-seconds; RFC 9110 says integers, a decimal costs nothing to accept.
_DELTA_SECONDS = re.compile(r"\d+(?:\.\d+)?", re.ASCII)
_INTEGER = re.compile(r"-?\d+", re.ASCII)
# Real values are a few characters; the cap keeps hostile input cheap to reject.
_MAX_LEN = 64
# A person's span: hours, minutes, seconds in that order, each optional, bare digits = seconds.
_SPAN = re.compile(
    r"(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s?)?", re.ASCII
)


def parse_span(text: str) -> float | None:
    """Seconds in ``7h``, ``45m``, ``1h30m``, ``90s`` or ``90`` (case and spaces around ignored)."""
    value = text.strip().lower()
    match = _SPAN.fullmatch(value) if len(value) <= _MAX_LEN else None
    if not match or not any(match.groupdict().values()):
        return None
    seconds = sum(float(match[k] or 0) * f for k, f in (("h", 3600), ("m", 60), ("s", 1)))
    return _finite(seconds)


def _finite(seconds: float) -> float | None:
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def parse_retry_delay(value: object) -> float | None:
    """Seconds from ``RetryInfo.retryDelay``: ``"31s"`` or ``{"seconds": 31, "nanos": 0}``."""
    if isinstance(value, str):
        text = value.strip()
        if len(text) > _MAX_LEN or not _DURATION.fullmatch(text):
            return None
        return _finite(float(text[:-1]))
    if isinstance(value, dict):
        # The object form is what proto-to-dict converters emit; int64 seconds may be a string.
        seconds = _number(value.get("seconds", 0))
        nanos = _number(value.get("nanos", 0))
        if seconds is None or nanos is None:
            return None
        return _finite(seconds + nanos / 1e9)
    return None


def _number(value: object) -> float | None:
    if isinstance(value, str) and len(value) <= _MAX_LEN and _INTEGER.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an int beyond float range
            return None
    return None


def parse_retry_after(value: str, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP-date.

    ``now`` (Unix seconds) anchors an HTTP-date; ``None`` reads the wall clock, and only then.
    A date in the past means "retry now": 0.0.
    """
    text = value.strip()
    if not text or len(text) > _MAX_LEN:
        return None
    if _DELTA_SECONDS.fullmatch(text):
        return _finite(float(text))
    try:
        when = parsedate_to_datetime(text)
        if when.tzinfo is None:  # "-0000" means UTC with no claim about local time
            when = when.replace(tzinfo=UTC)
        target = when.timestamp()
    except (ValueError, TypeError, IndexError, OverflowError, OSError):
        return None
    current = time.time() if now is None else now
    return _finite(max(0.0, target - current))
