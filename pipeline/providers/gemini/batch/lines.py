"""Lines of the JSONL files a batch job reads and writes.

A request line is ``{"key": KEY, "request": BODY}`` where BODY is exactly the body the
provider prepared for the online call, spliced in as bytes: a photo-laden body is never parsed
or encoded again (JSON holds no raw line break outside whitespace, so one in the body can only
be whitespace and becomes a space).

A result line is ``{"response": GenerateContentResponse, "key": KEY}`` or ``{"error":
google.rpc.Status, "key": KEY}``, in any field order (inline results carry the key in
``metadata.key``; both read alike). The response goes through the online classifier
(``classify.classify_parsed``): a refusal in batch is a successful line with a block reason or
IMAGE_SAFETY and no image, exactly as online. An error carries a gRPC code (8, not 429):
mapped to its HTTP status, it is read by the online error rules. Reading is total: a line that
is not JSON, or has no key, is ``ResultLine(None, <a failed outcome>)``, never an exception.
"""

from __future__ import annotations

from typing import Any

import orjson

from pipeline.core import jsonread as jr
from pipeline.core.types import Delivery, Outcome, OutcomeKind, RawResponse
from pipeline.providers.base import PreparedRequest
from pipeline.providers.batchapi import ResultLine
from pipeline.providers.gemini.classify import classify_parsed
from pipeline.providers.gemini.errormap import classify_error, server_failed
from pipeline.providers.gemini.errors import error_from_json

UNREADABLE = "UNREADABLE_RESULT_LINE"

# google.rpc.Code -> the HTTP status Google maps it to (google/rpc/code.proto).
_RPC_TO_HTTP = {
    1: 499,  # CANCELLED
    2: 500,  # UNKNOWN
    3: 400,  # INVALID_ARGUMENT
    4: 504,  # DEADLINE_EXCEEDED
    5: 404,  # NOT_FOUND
    6: 409,  # ALREADY_EXISTS
    7: 403,  # PERMISSION_DENIED
    8: 429,  # RESOURCE_EXHAUSTED
    9: 400,  # FAILED_PRECONDITION
    10: 409,  # ABORTED
    11: 400,  # OUT_OF_RANGE
    12: 501,  # UNIMPLEMENTED
    13: 500,  # INTERNAL
    14: 503,  # UNAVAILABLE
    15: 500,  # DATA_LOSS
    16: 401,  # UNAUTHENTICATED
}
_STATUS_TO_RPC = {
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}


def request_line(key: str, request: PreparedRequest) -> bytes:
    """One request line, ending in a newline; the body spliced in unchanged."""
    body = request.body
    if b"\n" in body or b"\r" in body:
        body = body.replace(b"\r", b" ").replace(b"\n", b" ")
    return b'{"key":' + orjson.dumps(key) + b',"request":' + body + b"}\n"


def read_result_line(line: bytes, *, follow_links: bool = False) -> ResultLine:
    """One result line, read by the online rules; total."""
    try:
        data = jr.loads(line)
    except (ValueError, RecursionError):
        return ResultLine(None, unreadable(f"not JSON ({len(line)} bytes)"))
    if not isinstance(data, dict):
        return ResultLine(None, unreadable("not a JSON object"))
    key = _key(data)
    if key is None:
        return ResultLine(None, unreadable("no key"))
    if "error" in data and data.get("response") is None:
        return ResultLine(key, line_error(data["error"]))
    if "response" not in data:
        return ResultLine(key, unreadable("neither a response nor an error"))
    return ResultLine(key, classify_parsed(data["response"], follow_links=follow_links))


def result_line(entry: object) -> bytes | None:
    """An inline job's result entry as a result line (the key out of ``metadata``); None for
    an entry that is not an object."""
    if not isinstance(entry, dict):
        return None
    out: dict[str, Any] = {k: v for k, v in entry.items() if k in ("response", "error")}
    key = _key(entry)
    if key is not None:
        out["key"] = key
    return orjson.dumps(out) + b"\n"


def line_error(error: object) -> Outcome:
    """A line's ``error`` (a ``google.rpc.Status``) by the online error rules; not billed."""
    if not isinstance(error, dict):
        return server_failed(unreadable("an error that is not an object"))
    code = jr.integer(error.get("code"))
    status = jr.enum(error.get("status"))
    if code is None or code == 0:
        code = _STATUS_TO_RPC.get(status or "", 2)
    http = code if code >= 100 else _RPC_TO_HTTP.get(code, 500)
    body = error_from_json({"error": {**error, "code": http}})
    assert body is not None  # an object under "error" always reads
    return server_failed(classify_error(http, body, RawResponse(http, {}, b""), None))


def unreadable(what: str) -> Outcome:
    """A line that cannot be joined to its row, or read at all. The row failed (its line is
    kept for inspection); the generation may have been billed."""
    message = f"a result line that could not be read: {what}"
    return Outcome(OutcomeKind.ROW_ERROR, UNREADABLE, message=message, delivery=Delivery.ANSWERED)


def _key(data: dict[str, Any]) -> str | None:
    key = data.get("key")
    if key is None:
        metadata = data.get("metadata")
        key = metadata.get("key") if isinstance(metadata, dict) else None
    if isinstance(key, int) and not isinstance(key, bool):
        key = str(key)
    return key if isinstance(key, str) and key else None
