"""The requests of a batch: read from an inline list or a JSONL file, each validated like a
``generateContent`` body, and each given its outcome (success, refusal or error line) by the
same draws and trigger tokens as online requests.

Parsing runs in a worker thread (a file can be gigabytes of base64) and only reads; outcomes are
decided afterwards on the event loop, since they count occurrences in the run's state.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.emulator.batchspecs import BatchFault
from pipeline.emulator.config import EmulatorConfig
from pipeline.emulator.errors import ApiError, invalid_argument
from pipeline.emulator.faults import find_triggers, refusal, unit
from pipeline.emulator.models import ModelInfo
from pipeline.emulator.specs import FaultKind
from pipeline.emulator.stats import RunState
from pipeline.emulator.validate import GenerationRequest, validate

# google.rpc.Code of each canonical status: batch error lines carry the gRPC code, not HTTP's.
RPC_CODES = {
    "CANCELLED": 1,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "UNAUTHENTICATED": 16,
}
_INTERNAL = (13, "Internal error encountered.")
# What a transient trigger token (``#503`` ...) becomes inside a batch: an error line.
_TRANSIENT_LINES: dict[FaultKind, tuple[int, str]] = {
    FaultKind.RATE_LIMIT: (8, "Resource has been exhausted (e.g. check quota)."),
    FaultKind.QUOTA_DAY: (8, "Resource has been exhausted (e.g. check quota)."),
    FaultKind.INTERNAL: _INTERNAL,
    FaultKind.UNAVAILABLE: (14, "The service is currently unavailable."),
    FaultKind.DEADLINE: (4, "Deadline expired before operation could complete."),
    FaultKind.RESET: _INTERNAL,
    FaultKind.TRUNCATE: _INTERNAL,
}


@dataclass(frozen=True, slots=True)
class Parsed:
    """One request as read: its key and the validated request, or the error its line gets."""

    key: str | None
    request: GenerationRequest | None
    error: tuple[int, str] | None


@dataclass(frozen=True, slots=True)
class Item:
    """One request of a job and its outcome; ``fault`` names an injected outcome, if any."""

    key: str | None
    request: GenerationRequest | None
    error: tuple[int, str] | None = None
    refusal: tuple[FaultKind, str] | None = None
    fault: str | None = None

    @property
    def billable(self) -> bool:
        return self.error is None and self.refusal is None


def _rpc_error(error: ApiError) -> tuple[int, str]:
    return RPC_CODES.get(error.status, 13), error.message


def _request(model_id: str, model: ModelInfo, key: str | None, raw: object) -> Parsed:
    if not isinstance(raw, dict):
        return Parsed(key, None, (3, "Invalid request: expected a GenerateContentRequest object."))
    # The request may repeat the model; the job's model is the one used (and fingerprinted).
    body = {name: value for name, value in raw.items() if name != "model"}
    if "serviceTier" in body or "service_tier" in body:
        # A batch job is its own tier (half price, asynchronous); what Google does with a
        # synchronous tier inside one is unconfirmed, so the emulator is strict about it.
        return Parsed(key, None, (3, "Invalid request: serviceTier is not allowed in a batch."))
    checked = validate(model_id, model, json.dumps(body).encode())
    if isinstance(checked, ApiError):
        return Parsed(key, None, _rpc_error(checked))
    return Parsed(key, checked, None)


def _key(metadata: object) -> str | None:
    key = metadata.get("key") if isinstance(metadata, dict) else None
    return None if key is None else str(key)


def parse_inline(model_id: str, model: ModelInfo, entries: object) -> list[Parsed] | ApiError:
    """``inputConfig.requests.requests``: ``[{"request": {...}, "metadata": {"key": ...}}]``."""
    if not isinstance(entries, list) or not entries:
        return invalid_argument("batch.input_config.requests.requests must not be empty.", "")
    parsed = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "request" not in entry:
            return invalid_argument(
                f"batch.input_config.requests.requests[{i}]: a request is required.", ""
            )
        parsed.append(_request(model_id, model, _key(entry.get("metadata")), entry["request"]))
    return parsed


def parse_file(model_id: str, model: ModelInfo, path: Path) -> list[Parsed]:
    """A JSONL input file, one ``{"key": ..., "request": {...}}`` per line (blank lines skipped);
    a line that is not such an object becomes an error line rather than failing the job."""
    return list(_file_lines(model_id, model, path))


def _file_lines(model_id: str, model: ModelInfo, path: Path) -> Iterator[Parsed]:
    with path.open("rb") as source:
        for number, line in enumerate(source, start=1):
            if not line.strip():
                continue
            try:
                document = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                yield Parsed(None, None, (3, f"Line {number} of the input file is not JSON."))
                continue
            if not isinstance(document, dict) or "request" not in document:
                key = _key(document)
                message = f"Line {number} of the input file has no request."
                yield Parsed(key, None, (3, message))
                continue
            yield _request(model_id, model, _key(document), document["request"])


def decide(parsed: Parsed, config: EmulatorConfig, state: RunState) -> Item:
    """The outcome of one request of a new job, from the same draws as online requests:
    trigger tokens, refusal rates (sticky per request) and ``line_error``. Online transient
    rates do not apply (Google retries those inside a batch); a transient trigger token
    becomes an error line, except ``#hang``, which is just a slow success."""
    request = parsed.request
    if request is None:
        return Item(parsed.key, None, error=parsed.error)
    fingerprint = request.fingerprint
    occurrence = state.occurrence(fingerprint)
    triggers = find_triggers(request.prompt)
    for trigger in triggers:
        if not trigger.kind.is_refusal and trigger.applies(occurrence):
            if trigger.kind is FaultKind.HANG:
                break
            line = _TRANSIENT_LINES[trigger.kind]
            return Item(parsed.key, request, error=line, fault=trigger.kind.value)
    rate = config.batch_faults.rate(BatchFault.LINE_ERROR)
    if rate > 0 and unit(config.seed, "line_error", fingerprint, occurrence) < rate:
        return Item(parsed.key, request, error=_INTERNAL, fault=BatchFault.LINE_ERROR.value)
    refused = refusal(config.seed, config.faults, fingerprint, occurrence, triggers)
    if refused is not None:
        return Item(parsed.key, request, refusal=refused, fault=refused[0].value)
    return Item(parsed.key, request)
