"""Adaptive concurrency: additive increase, multiplicative decrease of requests in flight.

The pool starts at ``--concurrency``. An overload signal (429, 503) halves the limit; every
``limit`` successes in a row raise it by one, back up to the cap. One burst of overload
answers (all the requests that were in flight when the server tipped over) counts as one
signal: after a decrease, further signals are ignored until as many requests as were in
flight at the time have completed.
"""

from __future__ import annotations

import math

import anyio


class AdaptiveLimit:
    """Owns the capacity limiter every request passes through."""

    def __init__(self, cap: int, *, floor: int = 1, decrease: float = 0.5) -> None:
        self.cap = cap
        self.floor = max(1, min(floor, cap))
        self.decrease = decrease
        self.limiter = anyio.CapacityLimiter(cap)
        self._successes = 0  # since the last change
        self._ignore = 0  # answers still to come from the burst that caused the last decrease

    @property
    def limit(self) -> int:
        return int(self.limiter.total_tokens)

    def on_overload(self) -> None:
        """The server said it is overloaded or rate-limited."""
        if self._ignore > 0:
            self._ignore -= 1
            return
        # Called after the request released its slot: what is still borrowed is the burst.
        self._ignore = self.limiter.borrowed_tokens
        self._successes = 0
        self.limiter.total_tokens = max(self.floor, math.floor(self.limit * self.decrease))

    def on_success(self) -> None:
        """A request completed normally."""
        if self._ignore > 0:
            self._ignore -= 1
        self._successes += 1
        if self._successes >= self.limit and self.limit < self.cap:
            self._successes = 0
            self.limiter.total_tokens = self.limit + 1
