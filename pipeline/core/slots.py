"""A counting semaphore for the event loop's tasks, first come first served: the request slots
and the body readers every request passes through.

anyio's ``CapacityLimiter`` does the same with more: it tracks which task holds each token,
and its wait goes through an ``Event``, a checkpoint and a walk of the task's cancel scopes.
A run's 128 workers share 64 request slots, so half of them wait for one at every row; that
wait cost ~80 calls a row, ~5% of a 512 px run's calls (docs/benchmarks.md). Here a waiter
is one future in a queue, and a token is handed straight to the first one when it is let go.

Cancellation (anyio cancels a task as asyncio does) is safe either way: a waiter cancelled
before its turn leaves the queue; one cancelled after it was handed a token gives it back.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Slots:
    """Up to ``total_tokens`` holders at once; waiters are served in the order they came."""

    __slots__ = ("_borrowed", "_total", "_waiters")

    def __init__(self, total: int) -> None:
        self._total = total
        self._borrowed = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def total_tokens(self) -> int:
        return self._total

    @total_tokens.setter
    def total_tokens(self, total: int) -> None:
        """A new size: more tokens go to waiters at once; fewer take none back (holders let
        theirs go in their own time, and nobody gets one until fewer than ``total`` hold)."""
        self._total = total
        self._hand_on()

    @property
    def borrowed_tokens(self) -> int:
        return self._borrowed

    async def acquire(self) -> None:
        """Take a token: at once when one is free and nobody waits (not a cancellation point
        then), else in turn."""
        if not self._waiters and self._borrowed < self._total:
            self._borrowed += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a token, then cancelled before it could use it
            elif waiter in self._waiters:  # not if a release already passed it over
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give a token back: to the first waiter, if any."""
        if self._borrowed <= 0:
            raise RuntimeError("release() without a token held")
        self._borrowed -= 1
        self._hand_on()

    def _hand_on(self) -> None:
        while self._waiters and self._borrowed < self._total:
            waiter = self._waiters.popleft()
            if waiter.done():  # cancelled, its task not yet resumed to leave the queue
                continue
            self._borrowed += 1
            waiter.set_result(None)
