"""Google's JSON for batch jobs and files, read into ``RemoteJob`` and ``RemoteFile``.

Pure and total: any JSON in, a value (or None when there is no name to call it by) out.

A job is an Operation: ``{"name", "metadata": {GenerateContentBatch}, "done"?, "response"?,
"error"?}``; the batch itself (``metadata``) holds the model, display name, state, counts and
output. Its counts are int64 strings, and a zero count is left out (proto3 JSON), so a missing
count reads 0. The state is ``BATCH_STATE_*`` (the SDK says ``JOB_STATE_*``); a state this
client does not know is ``UNKNOWN`` and keeps its wire spelling. The output is in
``metadata.output`` (what the SDK reads) or ``response`` (what the REST reference shows), either
a ``responsesFile`` or ``inlinedResponses``. A bare batch (a list entry without the Operation
around it) reads the same.
"""

from __future__ import annotations

from typing import Any

from pipeline.core import jsonread as jr
from pipeline.providers.batchapi import BatchCounts, JobState, RemoteFile, RemoteJob

_PREFIXES = ("BATCH_STATE_", "JOB_STATE_")
_KNOWN = {s.value for s in JobState if s is not JobState.UNKNOWN}


def job_state(wire: object) -> JobState:
    """``BATCH_STATE_RUNNING`` -> RUNNING; anything unknown (UNSPECIFIED too) -> UNKNOWN."""
    text = jr.enum(wire) or ""
    for prefix in _PREFIXES:
        text = text.removeprefix(prefix)
    return JobState(text) if text in _KNOWN else JobState.UNKNOWN


def read_job(document: object) -> RemoteJob | None:
    """The job an Operation (or a bare batch) describes; None without a ``batches/`` name."""
    if not isinstance(document, dict):
        return None
    metadata = document.get("metadata")
    batch: dict[str, Any] = metadata if isinstance(metadata, dict) else document
    name = jr.string(document.get("name")) or jr.string(batch.get("name"))
    if name is None or not name.startswith("batches/"):
        return None
    wire_state = jr.string(batch.get("state")) or ""
    output = _output(batch.get("output")) or _output(document.get("response"))
    error = document.get("error") or batch.get("error")
    return RemoteJob(
        name=name,
        display_name=jr.string(jr.get(batch, "displayName", "display_name")) or "",
        model=(jr.string(batch.get("model")) or "").removeprefix("models/"),
        state=job_state(wire_state),
        wire_state=jr.cap(wire_state, jr.MAX_REASON),
        counts=_counts(jr.get(batch, "batchStats", "batch_stats")),
        output_file=jr.string(jr.get(output, "responsesFile", "responses_file")),
        inline_output=jr.get(output, "inlinedResponses", "inlined_responses") is not None,
        error=_error_text(error),
        created=jr.string(jr.get(batch, "createTime", "create_time")),
    )


def read_file(document: object) -> RemoteFile | None:
    """A File resource; None without a ``files/`` name."""
    if not isinstance(document, dict):
        return None
    name = jr.string(document.get("name"))
    if name is None or not name.startswith("files/"):
        return None
    return RemoteFile(
        name=name,
        display_name=jr.string(jr.get(document, "displayName", "display_name")) or "",
        size_bytes=jr.integer(jr.get(document, "sizeBytes", "size_bytes")) or 0,
        state=jr.enum(document.get("state")) or "",
        download_uri=jr.string(jr.get(document, "downloadUri", "download_uri")),
    )


def inline_results(document: object) -> list[object] | None:
    """The entries of an inline job's ``inlinedResponses``; None when it has none (yet)."""
    if not isinstance(document, dict):
        return None
    metadata = document.get("metadata")
    batch = metadata if isinstance(metadata, dict) else document
    for output in (batch.get("output"), document.get("response")):
        found = jr.get(_output(output), "inlinedResponses", "inlined_responses")
        if isinstance(found, dict):  # the proto's wrapper message around the list
            found = jr.get(found, "inlinedResponses", "inlined_responses")
        if isinstance(found, list):
            return found
    return None


def _output(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _counts(stats: object) -> BatchCounts:
    if not isinstance(stats, dict):
        return BatchCounts()

    def count(camel: str, snake: str) -> int:
        return jr.integer(jr.get(stats, camel, snake)) or 0

    return BatchCounts(
        requests=count("requestCount", "request_count"),
        succeeded=count("successfulRequestCount", "successful_request_count"),
        failed=count("failedRequestCount", "failed_request_count"),
        pending=count("pendingRequestCount", "pending_request_count"),
    )


def _error_text(error: object) -> str | None:
    if isinstance(error, str):
        return jr.message(error)
    if not isinstance(error, dict):
        return None
    message = jr.string(error.get("message"))
    code = jr.integer(error.get("code"))
    text = " ".join(p for p in (f"code {code}:" if code is not None else "", message or "") if p)
    return jr.message(text) if text else None
