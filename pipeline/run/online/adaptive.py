"""Adaptive concurrency: additive increase, multiplicative decrease of requests in flight.

The pool starts at ``--concurrency`` (C). A sign that the server is overloaded (502, 503,
504, a timeout) halves the limit, but never below max(4, C/4): below that, one slow or hung
request would hold most of the pool, and throughput would collapse under a fault mix that is
not about load at all. A 429 does not move the limit: the server said how long to wait, and
the shared rate gate makes everyone wait that long. Recovery is quick: every limit/4
successes (at least one) add one request back, up to C.

One burst of overload answers (all the requests that were in flight when the server tipped
over) counts as one signal: after a decrease, further signals are ignored until as many
requests as were in flight at the time have completed.

A hung request costs its own slot, not the pool: once a request has run for a quarter of its
timeout, it stops counting against the limit (but still against C: requests in flight
never pass C). Without this, a few hung requests at the floor would hold most of it
until their timeouts, minutes at a time.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pipeline.core.slots import Slots
from pipeline.core.tiers import SHED
from pipeline.core.types import Outcome, OutcomeKind

MIN_FLOOR = 4  # requests in flight that overload signals never take away
SLOW_FRACTION = 0.25  # of its timeout, after which a request no longer holds the pool
_OVERLOAD_STATUSES = (502, 503, 504)


def default_floor(cap: int) -> int:
    """max(4, C/4), never above the cap itself."""
    return min(cap, max(MIN_FLOOR, cap // 4))


def is_overload(outcome: Outcome) -> bool:
    """The server is telling us to send less: a gateway error, overload or a timeout.

    A 429 is not: it carries its own wait, which the rate gate enforces for the whole pool.
    """
    if outcome.kind is not OutcomeKind.TRANSIENT or outcome.reason == SHED:
        return False  # a shed Flex request is Flex being best effort: its row backs off
    return outcome.http_status in _OVERLOAD_STATUSES or outcome.reason == "TIMEOUT"


class AdaptiveLimit:
    """Owns the capacity limiter every request passes through."""

    def __init__(self, cap: int, *, floor: int | None = None, decrease: float = 0.5) -> None:
        self.cap = cap
        self.floor = max(1, min(default_floor(cap) if floor is None else floor, cap))
        self.decrease = decrease
        self.limiter = Slots(cap)
        self._limit = cap  # what AIMD allows; the limiter also lets slow requests' slots go
        self._slow = 0  # requests in flight past their slow threshold
        self._successes = 0  # since the last change
        self._ignore = 0  # answers still to come from the burst that caused the last decrease

    @property
    def limit(self) -> int:
        return self._limit

    def _set(self, limit: int) -> None:
        self._limit = limit
        # Slow requests' slots go back to the pool, but never past C in flight.
        self.limiter.total_tokens = min(self.cap, limit + self._slow)

    @asynccontextmanager
    async def slot(self, timeout_s: float) -> AsyncIterator[None]:
        """Hold a slot for one request; past ``SLOW_FRACTION`` of its timeout it gives the slot
        back to the pool (a timer on the event loop: no task, nothing polls)."""
        slow = False

        def slowed() -> None:
            nonlocal slow
            slow = True
            self._slow += 1
            self._set(self._limit)

        await self.limiter.acquire()
        try:
            timer = asyncio.get_running_loop().call_later(timeout_s * SLOW_FRACTION, slowed)
            try:
                yield
            finally:
                timer.cancel()
                if slow:
                    self._slow -= 1
                    self._set(self._limit)
        finally:
            self.limiter.release()

    def on_answer(self, outcome: Outcome) -> None:
        """Adjust the limit to one attempt's outcome (call after its slot was released)."""
        if is_overload(outcome):
            self.on_overload()
        elif outcome.kind not in (OutcomeKind.TRANSIENT, OutcomeKind.RATE_LIMIT):
            self.on_success()

    def on_overload(self) -> None:
        """The server said it is overloaded."""
        if self._ignore > 0:
            self._ignore -= 1
            return
        # Called after the request released its slot: what is still borrowed is the burst.
        self._ignore = max(0, self.limiter.borrowed_tokens - self._slow)
        self._successes = 0
        self._set(max(self.floor, math.floor(self.limit * self.decrease)))

    def on_success(self) -> None:
        """A request completed normally."""
        if self._ignore > 0:
            self._ignore -= 1
        self._successes += 1
        if self._successes >= max(1, self.limit // 4) and self.limit < self.cap:
            self._successes = 0
            self._set(self.limit + 1)
