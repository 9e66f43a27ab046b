"""The ASGI application: routes, authentication, and the order of checks of ``generateContent``.

Order of checks, as Google's front end applies them: route and method -> API key -> model
exists (404) -> body and validation (400) -> a model without quota (``--no-quota``: 429 with
quotaValue 0) -> ``--rpm`` window (429, not counted in the window) -> injected transient
fault -> refusal (trigger token or sticky draw) -> success.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import parse_qs

import anyio.to_thread

from pipeline.emulator import errors, responses
from pipeline.emulator.batch_routes import BatchSurface
from pipeline.emulator.config import EmulatorConfig
from pipeline.emulator.errors import ApiError
from pipeline.emulator.exchange import JSON, Exchange, Receive, Scope, Send, cut
from pipeline.emulator.faults import (
    cut_fraction,
    find_triggers,
    latency_s,
    refusal,
    transient_fault,
)
from pipeline.emulator.images import THREAD_PIXELS, Renderer
from pipeline.emulator.models import find_model
from pipeline.emulator.ratelimit import SlidingWindow
from pipeline.emulator.specs import FaultKind
from pipeline.emulator.stats import RunState
from pipeline.emulator.timestamps import WallClock
from pipeline.emulator.validate import GenerationRequest, validate

_GEMINI_PATH = re.compile(
    r"^/(?P<version>v1beta|v1|v1alpha)/models/(?P<model>[^:]+):generateContent$"
)
_VERTEX_PATH = re.compile(
    r"^/(?P<version>v1|v1beta1)/(?P<name>projects/[^/]+/locations/[^/]+/publishers/google/"
    r"models/(?P<model>[^/:]+)):generateContent$"
)
_DEFAULT_MINUTE_LIMIT = 10
_DAY_LIMIT = 250


@dataclass(frozen=True, slots=True)
class _Attempt:
    """One admitted attempt at a request: what every answer to it is computed from."""

    request: GenerationRequest
    answer: responses.Answer
    occurrence: int
    latency_s: float
    now: float


@dataclass(frozen=True, slots=True)
class _Route:
    version: str
    model: str
    vertex_name: str | None  # the Vertex resource name; None for the Gemini API


class EmulatorApp:
    """The emulator as an ASGI 3 callable. Create it with ``create_app``."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self._state = RunState()
        # One --rpm window per model, as Google's quota is per project and model.
        self._windows: dict[str, SlidingWindow] = {}
        self._renderer = Renderer(config.payload, config.image_cache_bytes)
        # The Files and Batch APIs (their own modules; they share the state and the renderer).
        self.batch = BatchSurface(config, self._state, self._renderer, WallClock(config.clock))

    def stats_snapshot(self) -> dict[str, object]:
        """The counters served at ``GET /_emulator/stats``."""
        self.batch.engine.advance()  # bill the batch jobs that have ended by now
        return self._state.snapshot()

    def reset_stats(self) -> None:
        """Forget the run: counters, fingerprints, retry deadlines, the rpm window, batch jobs
        and files."""
        self._state.reset()
        self._windows.clear()
        self.batch.clear()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["path"].startswith("/_emulator/"):
            await self._control(scope, send)
            return
        exchange = Exchange(receive, send, self._state, self.config)
        self._state.arrived()
        try:
            if not await self.batch.handle(scope, exchange, self._authenticate_key):
                await self._api(scope, exchange)
        finally:
            # Runs on cancellation too (an in-process client gave up): the request still counts.
            if not exchange.recorded:
                self._state.answered("disconnected")
            self._state.finished()

    async def _control(self, scope: Scope, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        if path == "/_emulator/stats" and method == "GET":
            status, body = 200, json.dumps(self.stats_snapshot()).encode()
        elif path == "/_emulator/reset" and method == "POST":
            self.reset_stats()
            status, body = 200, json.dumps(self.stats_snapshot()).encode()
        else:
            status, body = 404, errors.route_not_found().body()
        headers = [(b"content-type", JSON), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _api(self, scope: Scope, exchange: Exchange) -> None:
        route = _route(scope)
        body = await exchange.read_body()
        if route is None:
            await exchange.error(errors.route_not_found())
            return
        denied = self._authenticate(scope, route)
        if denied is not None:
            await exchange.error(denied)
            return
        model_id = route.model.removeprefix("models/")
        model = find_model(model_id)
        if model is None:
            await exchange.error(errors.model_not_found(model_id, route.version, route.vertex_name))
            return
        request = validate(model_id, model, body, vertex=route.vertex_name is not None)
        if isinstance(request, ApiError):
            await exchange.error(request)
            return
        await self._generate(request, exchange, vertex=route.vertex_name is not None)

    def _authenticate_key(self, scope: Scope) -> ApiError | None:
        return self._authenticate(scope, _Route("v1beta", "", None))

    def _authenticate(self, scope: Scope, route: _Route) -> ApiError | None:
        headers = dict(scope["headers"])
        bearer = headers.get(b"authorization", b"").decode("latin-1")
        token = bearer[7:].strip() if bearer[:7].lower() == "bearer " else ""
        expected = self.config.api_key
        if route.vertex_name is not None:
            if not token:
                return errors.vertex_unauthenticated(missing=True)
            if expected is not None and token != expected:
                return errors.vertex_unauthenticated(missing=False)
            return None
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        key = headers.get(b"x-goog-api-key", b"").decode("latin-1") or (query.get("key") or [""])[0]
        key = key or token
        if not key:
            return errors.unregistered_caller()
        if expected is not None and key != expected:
            return errors.api_key_invalid()
        return None

    async def _generate(
        self, request: GenerationRequest, exchange: Exchange, *, vertex: bool
    ) -> None:
        config, state = self.config, self._state
        fingerprint = request.fingerprint
        now = config.clock()
        state.check_retry(fingerprint, now)
        if request.model_id in config.no_quota_models:
            state.rate_limited += 1
            await exchange.error(errors.no_quota(model=request.model_id))
            return
        if config.rpm is not None and await self._rate_limited(request, exchange, now):
            return
        occurrence = state.occurrence(fingerprint)
        triggers = find_triggers(request.prompt)
        seed, faults = config.seed, config.faults
        attempt = _Attempt(
            request=request,
            answer=responses.new_answer(seed, vertex=vertex),
            occurrence=occurrence,
            latency_s=latency_s(config.latency, seed, fingerprint, occurrence, request.image_size),
            now=now,
        )
        fault = transient_fault(seed, faults, fingerprint, occurrence, triggers)
        if fault is not None:
            state.faults[fault.value] += 1
            await self._inject(fault, attempt, exchange)
            return
        refused = refusal(seed, faults, fingerprint, occurrence, triggers)
        if refused is not None:
            state.refused += 1
            state.faults[refused[0].value] += 1
            await self._refuse(*refused, attempt, exchange)
            return
        # Admitted to a successful generation: billed now, whatever happens to the connection.
        state.bill(fingerprint)
        if await exchange.wait(attempt.latency_s):
            await exchange.reply(200, await self._image_body(request, attempt.answer))

    async def _rate_limited(
        self, request: GenerationRequest, exchange: Exchange, now: float
    ) -> bool:
        """Apply ``--rpm``: answer 429 (True) when this model's window is full."""
        limit = self.config.rpm or 1
        window = self._windows.setdefault(request.model_id, SlidingWindow(limit))
        wait = window.admit(now)
        if wait is None:
            return False
        self._state.rate_limited += 1
        delay = errors.whole_seconds(wait)
        self._state.told_to_wait(request.fingerprint, now, delay)
        await exchange.error(
            errors.quota_exhausted(
                model=request.model_id,
                retry_delay_s=delay,
                per_day=False,
                limit=limit,
                exact_delay_s=wait,
            )
        )
        return True

    async def _inject(self, fault: FaultKind, attempt: _Attempt, exchange: Exchange) -> None:
        """Answer with a transient fault. Quota and overload answer at once; the rest after the
        attempt's latency, as they happen during or after generation."""
        faults, request = self.config.faults, attempt.request
        if fault in (FaultKind.RATE_LIMIT, FaultKind.QUOTA_DAY):
            delay = faults.retry_delay_s
            self._state.told_to_wait(request.fingerprint, attempt.now, delay)
            per_day = fault is FaultKind.QUOTA_DAY
            limit = _DAY_LIMIT if per_day else (self.config.rpm or _DEFAULT_MINUTE_LIMIT)
            await exchange.error(
                errors.quota_exhausted(
                    model=request.model_id,
                    retry_delay_s=delay,
                    per_day=per_day,
                    limit=limit,
                    exact_delay_s=delay,
                )
            )
        elif fault is FaultKind.UNAVAILABLE:
            await exchange.error(errors.overloaded())
        elif fault is FaultKind.HANG:
            # A hang is a generation that finishes (and is billed) long after any timeout.
            self._state.bill(request.fingerprint)
            if await exchange.wait(faults.hang_s):
                await exchange.reply(200, await self._image_body(request, attempt.answer))
        elif not await exchange.wait(attempt.latency_s):
            return
        elif fault is FaultKind.INTERNAL:
            await exchange.error(errors.internal())
        elif fault is FaultKind.DEADLINE:
            await exchange.error(errors.deadline_exceeded())
        else:
            body = await self._image_body(request, attempt.answer)
            fraction = cut_fraction(self.config.seed, request.fingerprint, attempt.occurrence)
            kept = int(sum(len(piece) for piece in body) * fraction)
            if fault is FaultKind.RESET:
                await exchange.reset(body, kept)
            else:  # truncate: a complete HTTP answer whose JSON stops midway
                await exchange.reply(200, cut(body, kept))

    async def _refuse(
        self, kind: FaultKind, reason: str, attempt: _Attempt, exchange: Exchange
    ) -> None:
        if not await exchange.wait(attempt.latency_s):
            return
        request, answer = attempt.request, attempt.answer
        if kind is FaultKind.BLOCK:
            await exchange.reply(200, responses.blocked(request, answer, reason))
        elif kind is FaultKind.NO_IMAGE:
            await exchange.reply(200, responses.text_only(request, answer))
        else:
            await exchange.reply(200, responses.image_refused(request, answer, kind))

    async def _image_body(
        self, request: GenerationRequest, answer: responses.Answer
    ) -> list[bytes]:
        width, height = request.model.pixels(request.image_size, request.aspect_ratio)
        if width * height > THREAD_PIXELS:
            image = await anyio.to_thread.run_sync(self._renderer.final_image, request)
        else:
            image = self._renderer.final_image(request)
        thought = self._renderer.thought_image(request) if request.model.thinks else None
        return responses.success(request, answer, image, thought)


def _route(scope: Scope) -> _Route | None:
    if scope["method"] != "POST":
        return None
    path = scope["path"]
    match = _GEMINI_PATH.match(path)
    if match is not None:
        return _Route(match["version"], match["model"], None)
    match = _VERTEX_PATH.match(path)
    if match is not None:
        return _Route(match["version"], match["model"], match["name"])
    return None


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_app(config: EmulatorConfig) -> EmulatorApp:
    """The emulator as an ASGI application, configured once."""
    return EmulatorApp(config)
