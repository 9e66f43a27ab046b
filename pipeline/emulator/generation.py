"""One generation, from an admitted request to its answer, the same on every route: a model
without quota (``--no-quota``: 429 with quotaValue 0) -> the ``--rpm`` window (429, not counted
in the window) -> a shed Flex request -> an injected transient fault -> a Model Armor block
(Vertex) -> a refusal (trigger token or sticky draw) -> success, billed at the tier's price.

The route's ``Dialect`` words the outcome; every wait is emulated time (``--time-scale``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import anyio.to_thread

from pipeline.emulator import errors, responses, tiers, vertex
from pipeline.emulator.config import EmulatorConfig
from pipeline.emulator.dialects import Dialect
from pipeline.emulator.exchange import Exchange, cut
from pipeline.emulator.faults import (
    cut_fraction,
    find_triggers,
    latency_s,
    refusal,
    transient_fault,
)
from pipeline.emulator.images import THREAD_PIXELS, Encoded, Renderer
from pipeline.emulator.pricing import price_micros
from pipeline.emulator.ratelimit import SlidingWindow
from pipeline.emulator.specs import FaultKind
from pipeline.emulator.stats import RunState
from pipeline.emulator.tiers import Tier, TierChoice
from pipeline.emulator.validate import GenerationRequest

_DEFAULT_MINUTE_LIMIT = 10
_DAY_LIMIT = 250


@dataclass(frozen=True, slots=True)
class Call:
    """How a request came: its route (a ``by_route`` key), tier and dialect."""

    route: str
    choice: TierChoice
    dialect: Dialect
    vertex: bool


@dataclass(frozen=True, slots=True)
class _Attempt:
    """One admitted attempt at a request: what every answer to it is computed from."""

    request: GenerationRequest
    call: Call
    answer: responses.Answer
    occurrence: int
    latency_s: float
    now: float


class Generator:
    """The generation pipeline, with the ``--rpm`` windows and the image renderer it owns."""

    def __init__(self, config: EmulatorConfig, state: RunState) -> None:
        self.config = config
        self._state = state
        # One --rpm window per model, as Google's quota is per project and model.
        self._windows: dict[str, SlidingWindow] = {}
        self.renderer = Renderer(config.payload, config.image_cache_bytes)

    def reset(self) -> None:
        self._windows.clear()

    def _delay(self, seconds: float) -> float:
        """A retry delay to announce: whole seconds in real time, milliseconds when scaled."""
        if self.config.time_scale == 1:
            return errors.whole_seconds(seconds)
        return max(0.001, math.ceil(seconds * 1000 - 1e-6) / 1000)

    async def generate(self, request: GenerationRequest, exchange: Exchange, call: Call) -> None:
        config, state = self.config, self._state
        fingerprint, tier = request.fingerprint, call.choice.tier
        now = config.clock()
        state.check_retry(fingerprint, now)
        state.routes.tiered(tier)
        if request.model_id in config.no_quota_models:
            state.rate_limited += 1
            await exchange.error(errors.no_quota(model=request.model_id))
            return
        if config.rpm is not None and await self._rate_limited(request, exchange, now):
            return
        occurrence = state.occurrence(fingerprint)
        triggers = find_triggers(request.prompt)
        seed, faults = config.seed, config.faults
        flex = tier is Tier.FLEX
        answer = responses.new_answer(
            seed,
            vertex=call.vertex,
            traffic_type=tiers.TRAFFIC_TYPE[tier],
            service_tier=tier.value if call.choice.asked else None,
        )
        latency = config.flex_latency if flex else config.latency
        attempt = _Attempt(
            request=request,
            call=call,
            answer=answer,
            occurrence=occurrence,
            latency_s=latency_s(latency, seed, fingerprint, occurrence, request.image_size),
            now=now,
        )
        if flex and tiers.is_shed(seed, faults, fingerprint, occurrence, triggers):
            state.faults[FaultKind.SHED.value] += 1
            state.routes.shed(tier)
            await exchange.error(tiers.shed_error(config.shed_status, vertex=call.vertex))
            return
        fault = transient_fault(seed, faults, fingerprint, occurrence, triggers)
        if fault is not None:
            state.faults[fault.value] += 1
            await self._inject(fault, attempt, exchange)
            return
        armor = vertex.armor(request.prompt) if call.vertex else None
        if armor is not None:
            await self._armor(armor, attempt, exchange)
            return
        refused = refusal(seed, faults, fingerprint, occurrence, triggers)
        if refused is not None:
            state.refused += 1
            state.faults[refused[0].value] += 1
            await self._refuse(*refused, attempt, exchange)
            return
        # Admitted to a successful generation: billed now, whatever happens to the connection.
        self._bill(attempt)
        if await exchange.wait(attempt.latency_s):
            await exchange.reply(*await self._success(attempt))

    def _bill(self, attempt: _Attempt) -> None:
        call = attempt.call
        micros = price_micros(attempt.request, call.choice.tier)
        self._state.bill(
            attempt.request.fingerprint, route=call.route, tier=call.choice.tier, micros=micros
        )

    async def _rate_limited(
        self, request: GenerationRequest, exchange: Exchange, now: float
    ) -> bool:
        """Apply ``--rpm``: answer 429 (True) when this model's window is full."""
        limit = self.config.rpm or 1
        window = self._windows.setdefault(
            request.model_id, SlidingWindow(limit, 60.0 * self.config.time_scale)
        )
        wait = window.admit(now)
        if wait is None:
            return False
        self._state.rate_limited += 1
        await self._quota_exhausted(exchange, request, now, self._delay(wait), limit, exact=wait)
        return True

    async def _quota_exhausted(
        self,
        exchange: Exchange,
        request: GenerationRequest,
        now: float,
        delay: float,
        limit: int,
        *,
        exact: float,
        per_day: bool = False,
    ) -> None:
        """Answer 429 for ``request``'s model, telling it to wait ``delay`` (kept, so an early
        retry shows in the stats); ``exact`` is the wait before rounding."""
        self._state.told_to_wait(request.fingerprint, now, delay)
        await exchange.error(
            errors.quota_exhausted(
                model=request.model_id,
                retry_delay_s=delay,
                per_day=per_day,
                limit=limit,
                exact_delay_s=exact,
            )
        )

    async def _inject(self, fault: FaultKind, attempt: _Attempt, exchange: Exchange) -> None:
        """Answer with a transient fault. Quota and overload answer at once; the rest after the
        attempt's latency, as they happen during or after generation."""
        faults, request = self.config.faults, attempt.request
        if fault in (FaultKind.RATE_LIMIT, FaultKind.QUOTA_DAY):
            delay = faults.retry_delay_s * self.config.time_scale
            per_day = fault is FaultKind.QUOTA_DAY
            limit = _DAY_LIMIT if per_day else (self.config.rpm or _DEFAULT_MINUTE_LIMIT)
            await self._quota_exhausted(
                exchange, request, attempt.now, delay, limit, exact=delay, per_day=per_day
            )
        elif fault is FaultKind.UNAVAILABLE:
            await exchange.error(errors.overloaded())
        elif fault is FaultKind.HANG:
            # A hang is a generation that finishes (and is billed) long after any timeout.
            self._bill(attempt)
            if await exchange.wait(faults.hang_s):
                await exchange.reply(*await self._success(attempt))
        elif not await exchange.wait(attempt.latency_s):
            return
        elif fault is FaultKind.INTERNAL:
            await exchange.error(errors.internal())
        elif fault is FaultKind.DEADLINE:
            await exchange.error(errors.deadline_exceeded())
        else:
            if self.config.cut_answers_billed:  # the model ran and its 200 went out: Google bills
                self._bill(attempt)
            _, body = await self._success(attempt)
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
        request, answer, dialect = attempt.request, attempt.answer, attempt.call.dialect
        if kind is FaultKind.BLOCK:
            await exchange.reply(*dialect.blocked(request, answer, reason))
        elif kind is FaultKind.NO_IMAGE:
            await exchange.reply(*dialect.text_only(request, answer))
        else:
            await exchange.reply(*dialect.image_refused(request, answer, kind))

    async def _armor(self, where: str, attempt: _Attempt, exchange: Exchange) -> None:
        """A Model Armor block: a refusal that Google bills."""
        self._state.refused += 1
        self._state.faults["armor"] += 1
        self._bill(attempt)
        if not await exchange.wait(attempt.latency_s):
            return
        request, answer = attempt.request, attempt.answer
        if where == "prompt":
            refusal_body = responses.blocked(request, answer, "MODEL_ARMOR")
        else:
            refusal_body = responses.image_refused(request, answer, FaultKind.UNSAFE)
        await exchange.reply(200, vertex.armor_body(refusal_body, where))

    async def _success(self, attempt: _Attempt) -> tuple[int, list[bytes]]:
        request = attempt.request
        image, thought = await self.images(request)
        return attempt.call.dialect.success(request, attempt.answer, image, thought)

    async def images(self, request: GenerationRequest) -> tuple[Encoded, Encoded | None]:
        """The final image and, for thinking models, the draft (base64 pieces)."""
        width, height = request.model.pixels(request.image_size, request.aspect_ratio)
        if width * height > THREAD_PIXELS:
            image = await anyio.to_thread.run_sync(self.renderer.final_image, request)
        else:
            image = self.renderer.final_image(request)
        thought = self.renderer.thought_image(request) if request.model.thinks else None
        return image, thought
