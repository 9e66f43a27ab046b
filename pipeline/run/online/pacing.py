"""Pacing shared by the whole pool: the rate gate (the server said "wait": nobody sends until
then) and the ``--rpm`` leaky bucket (requests spaced evenly, never a minute's budget at once).
"""

from __future__ import annotations

import math

from aiolimiter import AsyncLimiter

from pipeline.core.clock import Clock
from pipeline.run.control import RunControl


class RateGate:
    """A pause shared by every worker: when the server says "wait", nobody sends until then."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._until = 0.0  # a time on ``clock.monotonic``

    def pause_until(self, deadline: float) -> None:
        self._until = max(self._until, deadline)

    async def wait(self, control: RunControl) -> None:
        # Sleep to the known deadline; loop only because another worker may have extended it.
        while self._until > self._clock.monotonic() and not control.draining:
            await control.sleep_until(self._until)


def smooth_limiter(rpm: float | None) -> AsyncLimiter | None:
    """A leaky bucket that paces requests evenly instead of spending a minute's budget at once."""
    if not rpm:
        return None
    burst = max(1, math.floor(rpm / 600))  # a few requests of slack at high rates, none at low
    return AsyncLimiter(burst, 60.0 * burst / rpm)
