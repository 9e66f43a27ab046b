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

    def slot(self, timeout_s: float) -> Slot:
        """A slot for one request, taken by ``async with`` or ``Slot.take``; past
        ``SLOW_FRACTION`` of its timeout it gives the slot back to the pool (a timer on the
        event loop: no task, nothing polls)."""
        return Slot(self, timeout_s)

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


class Slot:
    """One request's slot: taken (``take``, or entering ``async with``), then let go once
    (``release``). A class, not a generator-based context manager or an exit stack around
    one: a row holds a slot per attempt, and those layers were ~25 calls of every row."""

    __slots__ = ("_limit", "_slow", "_timeout_s", "_timer")

    def __init__(self, limit: AdaptiveLimit, timeout_s: float) -> None:
        self._limit = limit
        self._timeout_s = timeout_s
        self._timer: asyncio.TimerHandle | None = None  # set while the slot is held
        self._slow = False

    async def take(self) -> None:
        """Wait for the slot (a cancellation while waiting takes none)."""
        await self._limit.limiter.acquire()
        self._timer = asyncio.get_running_loop().call_later(
            self._timeout_s * SLOW_FRACTION, self._slowed
        )

    def release(self) -> None:
        """Let the slot go, if it was taken and not let go yet (never waits)."""
        if self._timer is None:
            return
        self._timer.cancel()
        self._timer = None
        limit = self._limit
        if self._slow:
            self._slow = False
            limit._slow -= 1
            limit._set(limit._limit)
        limit.limiter.release()

    def _slowed(self) -> None:
        self._slow = True
        limit = self._limit
        limit._slow += 1
        limit._set(limit._limit)

    async def __aenter__(self) -> None:
        await self.take()

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class Holding:
    """The slot a row's attempt holds until its final outcome is recorded: taken by the
    sender, let go when the row loop leaves ``with Holding()`` (a paid answer in hand counts
    as a request in flight)."""

    __slots__ = ("_slot",)

    def __init__(self) -> None:
        self._slot: Slot | None = None

    async def take(self, slot: Slot) -> None:
        await slot.take()
        self._slot = slot

    def __enter__(self) -> Holding:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._slot is not None:
            self._slot.release()
            self._slot = None
