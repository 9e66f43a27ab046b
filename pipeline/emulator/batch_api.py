"""The Batch API over HTTP: ``models/{m}:batchGenerateContent`` and ``batches`` get, list,
cancel and delete, answering with Google's Operation-shaped JSON::

    {"name": "batches/ID",
     "metadata": {"@type": "...GenerateContentBatch", "model": "models/M", "displayName",
                  "inputConfig"?, "output"?, "createTime", "updateTime", "endTime"?,
                  "batchStats": {"requestCount": "9", "pendingRequestCount": "9"},
                  "state": "BATCH_STATE_PENDING", "name": "batches/ID"},
     "done": true?, "response"?: {"@type": "...GenerateContentBatchOutput", "responsesFile"
                                  | "inlinedResponses": {"inlinedResponses": [...]}},
     "error"?: {"code", "message"}}

Counts are int64 strings and, as in any proto3 JSON, zero counts are left out. The output is
in both ``metadata.output`` (what the SDK reads) and ``response`` (what the REST docs read).
An inline job's results are spliced in from disk twice without being loaded; ``list`` leaves
them out (get the job to read them).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

from pipeline.emulator.batch_engine import BatchEngine
from pipeline.emulator.batch_jobs import Job, State
from pipeline.emulator.errors import ApiError, invalid_argument
from pipeline.emulator.exchange import Exchange, Scope
from pipeline.emulator.files_api import page
from pipeline.emulator.filestore import read_range
from pipeline.emulator.models import find_model
from pipeline.emulator.schema import camel
from pipeline.emulator.timestamps import WallClock

MAX_CREATE_BYTES = 20 * 1024 * 1024
_TYPES = "type.googleapis.com/google.ai.generativelanguage.v1main."
_BATCH_FIELDS = frozenset(
    {"name", "model", "displayName", "inputConfig", "priority", "webhookConfig"}
)
_INPUT_FIELDS = frozenset({"fileName", "requests"})
# Marks where an inline job's results go; never a string a request could contain.
_MARKER = "\x00inlined-" + secrets.token_hex(8)
_ENDED_ERRORS = {
    State.FAILED: {"code": 13, "message": "The batch failed: an internal error occurred."},
    State.CANCELLED: {"code": 1, "message": "The batch was cancelled."},
}


class BatchApi:
    """Handlers of the Batch API over one ``BatchEngine``."""

    def __init__(self, engine: BatchEngine, wall: WallClock) -> None:
        self._engine = engine
        self._wall = wall

    def operation(self, job: Job, now: float, *, inline_results: bool) -> dict[str, object]:
        """The job as JSON; an inline job's results are a marker string for the splicer."""
        state = job.state(now)
        metadata: dict[str, object] = {
            "@type": _TYPES + "GenerateContentBatch",
            "model": f"models/{job.model_id}",
            "displayName": job.display_name,
        }
        if job.input_file is not None:
            metadata["inputConfig"] = {"fileName": job.input_file}
        output: dict[str, object] | None = None
        if job.settled and job.results:
            if not job.inline:
                output = {"responsesFile": f"files/{job.output_id}"}
            elif inline_results:
                output = {"inlinedResponses": {"inlinedResponses": _MARKER}}
        if output is not None:
            metadata["output"] = output
        metadata["createTime"] = self._wall.rfc3339(job.created)
        metadata["updateTime"] = self._wall.rfc3339(job.updated(now))
        if state.terminal:
            metadata["endTime"] = self._wall.rfc3339(job.ended_at() or now)
        metadata["batchStats"] = {k: str(v) for k, v in job.counts(now).items() if v}
        metadata["state"] = state.value
        if job.priority is not None:
            metadata["priority"] = job.priority
        metadata["name"] = job.name
        document: dict[str, object] = {"name": job.name, "metadata": metadata}
        if state.terminal:
            document["done"] = True
            if output is not None:
                document["response"] = {"@type": _TYPES + "GenerateContentBatchOutput", **output}
            if state in _ENDED_ERRORS:
                document["error"] = _ENDED_ERRORS[state]
        return document

    async def _reply_job(self, exchange: Exchange, job: Job) -> None:
        document = self.operation(job, self._wall.now(), inline_results=True)
        text = json.dumps(document, indent=2).encode()
        if job.inline:
            await self._engine.outputs(job)
        path = job.rendering.path if job.inline and job.rendering is not None else None
        marker = json.dumps(_MARKER).encode()
        if path is None or marker not in text:
            await exchange.reply(200, text)
            return
        pieces = text.split(marker)
        size = path.stat().st_size
        length = sum(len(p) for p in pieces) + (len(pieces) - 1) * (size + 2)
        await exchange.stream(200, length, (), _spliced(pieces, path, size))

    async def create(self, exchange: Exchange, version: str, model_path: str) -> None:
        body = await exchange.read_body()
        model_id = model_path.removeprefix("models/")
        model = find_model(model_id)
        if model is None:
            await exchange.error(
                ApiError(
                    404,
                    "NOT_FOUND",
                    f"models/{model_id} is not found for API version {version}, or is not "
                    "supported for batchGenerateContent. Call ListModels to see the list of "
                    "available models and their supported methods.",
                )
            )
            return
        if len(body) > MAX_CREATE_BYTES:
            await exchange.error(
                invalid_argument(
                    f"Request payload size exceeds the limit: {MAX_CREATE_BYTES} bytes. "
                    "Upload larger batches as a JSONL file."
                )
            )
            return
        request = _batch_request(body)
        if isinstance(request, ApiError):
            await exchange.error(request)
            return
        display, source, priority = request
        job = await self._engine.create(model_id, model, display, source, priority)
        if isinstance(job, ApiError):
            await exchange.error(job)
            return
        self._engine.advance()  # a job with no delay has already ended
        await self._reply_job(exchange, job)

    async def get(self, exchange: Exchange, job_id: str) -> None:
        self._engine.advance()
        job = self._engine.jobs.get(job_id)
        if job is None:
            await exchange.error(_no_job(job_id))
            return
        await self._reply_job(exchange, job)

    async def listing(self, scope: Scope, exchange: Exchange) -> None:
        self._engine.advance()
        now = self._wall.now()
        jobs = sorted(self._engine.jobs.values(), key=lambda j: (-j.created, j.job_id))
        start, end = page(scope, len(jobs))
        document: dict[str, object] = {}
        if end > start:
            document["operations"] = [
                self.operation(job, now, inline_results=False) for job in jobs[start:end]
            ]
        if end < len(jobs):
            document["nextPageToken"] = str(end)
        await exchange.reply(200, json.dumps(document, indent=2).encode())

    async def cancel(self, exchange: Exchange, job_id: str) -> None:
        job = self._engine.jobs.get(job_id)
        if job is None:
            await exchange.error(_no_job(job_id))
            return
        self._engine.cancel(job)
        await exchange.reply(200, b"{}\n")

    async def delete(self, exchange: Exchange, job_id: str) -> None:
        job = self._engine.jobs.get(job_id)
        if job is None:
            await exchange.error(_no_job(job_id))
            return
        self._engine.delete(job)
        await exchange.reply(200, b"{}\n")


async def _spliced(pieces: list[bytes], path: Path, size: int) -> AsyncIterator[bytes]:
    for number, piece in enumerate(pieces):
        if number:
            yield b"["
            async for block in read_range(path, 0, size):
                yield block
            yield b"]"
        yield piece


def _no_job(job_id: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"Batch batches/{job_id} was not found.")


def _fields(value: object, allowed: frozenset[str], path: str) -> dict[str, object] | ApiError:
    if not isinstance(value, dict):
        return invalid_argument(f"Invalid JSON payload received. Expected an object at '{path}'.")
    out: dict[str, object] = {}
    for key, item in value.items():
        name = camel(key)
        if name not in allowed:
            return invalid_argument(
                f"Invalid JSON payload received. Unknown name \"{key}\" at '{path}': Cannot find "
                "field.",
                path,
            )
        out[name] = item
    return out


def _batch_request(body: bytes) -> tuple[str, str | object, str | None] | ApiError:
    """(displayName, file name or inline request list, priority) of a create body."""
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return invalid_argument("Invalid JSON payload received. Unexpected token.")
    top = _fields(document, frozenset({"batch"}), "")
    if isinstance(top, ApiError):
        return top
    batch = _fields(top.get("batch"), _BATCH_FIELDS, "batch")
    if isinstance(batch, ApiError):
        return batch
    config = _fields(batch.get("inputConfig") or {}, _INPUT_FIELDS, "batch.input_config")
    if isinstance(config, ApiError):
        return config
    display = batch.get("displayName")
    priority = batch.get("priority")
    file_name, requests = config.get("fileName"), config.get("requests")
    if (file_name is None) == (requests is None):
        return invalid_argument(
            "batch.input_config: exactly one of file_name or requests must be set.",
            "batch.input_config",
        )
    if file_name is not None:
        if not isinstance(file_name, str) or not file_name:
            return invalid_argument("batch.input_config.file_name must be a file name.", "")
        source: str | object = file_name
    else:
        inner = _fields(requests, frozenset({"requests"}), "batch.input_config.requests")
        if isinstance(inner, ApiError):
            return inner
        source = inner.get("requests")
    return (
        display if isinstance(display, str) else "",
        source,
        None if priority is None else str(priority),
    )
