"""The Batch API's engine: creates jobs, settles them when they end (billing at the batch price)
and renders their results to disk.

Draws are seeded and, like online faults, a pure function of (seed, job fingerprint,
occurrence): the fingerprint hashes the model and the input (a file's SHA-256, or the inline
requests), and the occurrence counts how often that same job was created before, so a
resubmitted job draws afresh. A job's requests share the online requests' fingerprints,
occurrence counts and refusal draws.

Billing happens, and the results start being written (in the background: ``batch_output``),
when a job is seen to have ended (any request, or a stats read): every generated image of a
SUCCEEDED job; of a CANCELLED job, those completed before the cancel if ``batch_cancel_bills``
(UNCONFIRMED at Google), and then their results are handed back too; nothing of a FAILED or
EXPIRED job. Refusals and error lines are not billed.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
from collections import Counter

import anyio.to_thread

from pipeline.emulator.batch_items import Parsed, decide, parse_file, parse_inline
from pipeline.emulator.batch_jobs import Job, State
from pipeline.emulator.batch_output import start
from pipeline.emulator.batchspecs import JOB_FATES, BatchFault
from pipeline.emulator.config import EmulatorConfig
from pipeline.emulator.errors import ApiError, invalid_argument
from pipeline.emulator.faults import latency_s, unit
from pipeline.emulator.filestore import FileStore
from pipeline.emulator.images import Renderer
from pipeline.emulator.models import ModelInfo
from pipeline.emulator.pricing import price_micros
from pipeline.emulator.stats import RunState
from pipeline.emulator.timestamps import WallClock

_JOB_ID_LENGTH = 28  # "batch-" + 28 = 34 characters: a file id the Files API accepts
_LONG_JOB_ID_LENGTH = 36  # "batch-" + 36 = 42: over the Files API's limit of 40
OUTPUT_MIME = "application/jsonl"
_RENDER_THREADS = 2  # results written at once; more would only fight over the GIL


class BatchEngine:
    """Every job of one emulator, oldest first."""

    def __init__(
        self,
        config: EmulatorConfig,
        state: RunState,
        store: FileStore,
        renderer: Renderer,
        wall: WallClock,
    ) -> None:
        self._config = config
        self._state = state
        self._store = store
        self._renderer = renderer
        self._wall = wall
        self._occurrences: Counter[bytes] = Counter()
        self.jobs: dict[str, Job] = {}
        self._unpublished: list[Job] = []  # jobs whose results are not in the Files API yet
        self._settling = threading.Lock()
        self._slots = threading.BoundedSemaphore(_RENDER_THREADS)

    async def create(
        self,
        model_id: str,
        model: ModelInfo,
        display_name: str,
        source: str | object,
        priority: str | None,
    ) -> Job | ApiError:
        """A new job from a file name (``files/...``) or the inline request list."""
        now = self._wall.now()
        live = sum(1 for job in self.jobs.values() if not job.state(now).terminal)
        if live >= self._config.batch_max_jobs:
            return ApiError(
                429,
                "RESOURCE_EXHAUSTED",
                f"Too many concurrent batch jobs: at most {self._config.batch_max_jobs} may be "
                "pending or running in a project.",
            )
        parsed: list[Parsed] | ApiError
        if isinstance(source, str):
            file_id = source.removeprefix("files/")
            stored = self._store.get(file_id, now)
            if stored is None:
                return invalid_argument(f"Input file files/{file_id} was not found.", "")
            parsed = await anyio.to_thread.run_sync(parse_file, model_id, model, stored.path)
            digest = stored.sha256_hex or file_id
        else:
            parsed = await anyio.to_thread.run_sync(parse_inline, model_id, model, source)
            digest = hashlib.sha256(json.dumps(source, sort_keys=True).encode()).hexdigest()
        if isinstance(parsed, ApiError):
            return parsed
        if not parsed:
            return invalid_argument("The batch has no requests: the input file is empty.", "")
        return self._new_job(
            model_id,
            display_name,
            source=source,
            priority=priority,
            parsed=parsed,
            digest=digest,
            now=now,
        )

    def _new_job(
        self,
        model_id: str,
        display_name: str,
        *,
        source: str | object,
        priority: str | None,
        parsed: list[Parsed],
        digest: str,
        now: float,
    ) -> Job:
        config, seed = self._config, self._config.seed
        fingerprint = hashlib.sha256(f"{model_id}\n{digest}".encode()).digest()
        occurrence = self._occurrences[fingerprint]
        self._occurrences[fingerprint] += 1
        faults = config.batch_faults

        def drawn(kind: BatchFault) -> bool:
            rate = faults.rate(kind)
            return rate > 0 and unit(seed, f"batch:{kind.value}", fingerprint, occurrence) < rate

        fate, edge = None, 0.0
        fate_draw = unit(seed, "batch:fate", fingerprint, occurrence)
        for kind in JOB_FATES:
            edge += faults.rate(kind)
            if fate_draw < edge:
                fate = kind
                break
        delay = latency_s(config.batch_delay, seed, fingerprint, occurrence, "1K")
        items = [decide(entry, config, self._state) for entry in parsed]
        order = list(range(len(items)))
        shuffle_seed = int(unit(seed, "batch:order", fingerprint, occurrence) * 2**53)
        random.Random(shuffle_seed).shuffle(order)
        is_file = isinstance(source, str)
        long_id = is_file and drawn(BatchFault.LONG_ID)
        job_id = self._store.new_id("batch", _LONG_JOB_ID_LENGTH if long_id else _JOB_ID_LENGTH)
        job = Job(
            job_id=job_id,
            model_id=model_id,
            display_name=display_name,
            input_file=f"files/{str(source).removeprefix('files/')}" if is_file else None,
            items=items,
            order=order,
            created=now,
            delay=delay * config.time_scale,
            fate=fate,
            late_s=faults.late_file_s * config.time_scale if drawn(BatchFault.LATE_FILE) else 0.0,
            output_id=f"batch-{job_id}",
            priority=priority,
        )
        self.jobs[job_id] = job
        self._state.batch_jobs_created += 1
        self._state.batch_requests += len(items)
        self._state.routes.tiered("batch", len(items))
        return job

    def advance(self) -> None:
        """Settle every job that has ended by now: bill and count what it hands back, and start
        writing its results. Locked: a stats read may come from another thread."""
        with self._settling:
            now = self._wall.now()
            for job in self.jobs.values():
                if not job.settled and job.state(now).terminal:
                    self._settle(job, now)

    def _settle(self, job: Job, now: float) -> None:
        state = job.state(now)
        hands_back = state is State.SUCCEEDED or (
            state is State.CANCELLED and self._config.batch_cancel_bills
        )
        job.results = job.delivered(now) if hands_back else []
        job.settled = True
        for index in job.results:
            item = job.items[index]
            if item.billable and item.request is not None:
                micros = price_micros(item.request, "batch")
                self._state.bill_batch(item.request.fingerprint, micros=micros)
            if item.refusal is not None:
                self._state.refused += 1
            if item.fault is not None:
                self._state.faults[item.fault] += 1
        if job.results:
            indices = sorted(job.results) if job.inline else job.results
            job.rendering = start(
                self._store.new_path(".jsonl"),
                [job.items[i] for i in indices],
                self._renderer,
                self._config.seed,
                inline=job.inline,
                slots=self._slots,
            )
            self._unpublished.append(job)

    async def outputs(self, job: Job | None = None) -> None:
        """Settle ended jobs and wait until the results of ``job`` (or of every job) are
        written; a file job's output file then appears in the Files API."""
        self.advance()
        for waiting in list(self._unpublished):
            rendering = waiting.rendering
            if rendering is None or (job is not None and waiting is not job):
                continue
            if not rendering.done.is_set():
                await anyio.to_thread.run_sync(rendering.done.wait)
            if waiting not in self._unpublished:
                continue  # published by another request meanwhile, or the run was reset
            rendering.check()
            self._unpublished.remove(waiting)
            if not waiting.inline:
                ended = waiting.ended_at() or self._wall.now()
                ready = ended + waiting.late_s
                self._store.add_generated(
                    waiting.output_id, rendering.path, OUTPUT_MIME, ended, ready_at=ready
                )

    def cancel(self, job: Job) -> None:
        now = self._wall.now()
        if not job.state(now).terminal:
            job.cancelled_at = now
        self.advance()

    def delete(self, job: Job) -> None:
        """Forget a job (cancelling it first if it is still running). Its output file stays,
        as files outlive the jobs that wrote them."""
        self.cancel(job)
        del self.jobs[job.job_id]

    def clear(self) -> None:
        """Forget every job; results being written are abandoned (the store removes them)."""
        self.jobs.clear()
        self._unpublished.clear()
        self._occurrences.clear()
