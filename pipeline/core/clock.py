"""Time as a run sees it: one ``Clock`` per run, the system's or a virtual one for tests.

A run reads the clock for durations and deadlines (``monotonic``), for the times it records
and for ``--stop-at`` (``now``), waits with ``sleep``, and is started by ``run``. Waits the run
leaves to anyio (cancel-scope deadlines, ``fail_after`` on a request, ``--rpm`` tokens, the
adaptive limit's slow-request timers) use the event loop's time, so a clock is also an event
loop: ``SystemClock`` runs on asyncio's own, whose time is ``time.monotonic``.

``VirtualClock`` is the designed testing mode (trio's ``MockClock`` with autojump, for
asyncio): it runs the run on an event loop whose time is the clock's, and whenever that loop
has nothing to do but wait for a timer (no callback ready, no I/O event, no worker thread
busy) time jumps straight to the earliest timer instead of waiting for it. Many concurrent
sleepers need nothing special: the loop's timer heap orders them, each jump goes to the
earliest, and everything due then runs before time moves again. Work in a worker thread
takes no virtual time: while one is busy the loop really waits for it, so file work can
never make a timeout fire early. The in-process emulator shares the clock
(``EmulatorConfig(clock=clock.monotonic)``), so a server-side delay (a 429's retryDelay, the
``--rpm`` window, latency, a hang) is measured on the same time as the client's waits.
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")


class Clock(Protocol):
    """What a run needs of time."""

    def monotonic(self) -> float:
        """Seconds on the event loop's clock: for durations and deadlines only."""
        ...

    def now(self) -> datetime:
        """The wall-clock time (aware, UTC): for records and ``--stop-at``."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    def run(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``anyio.run`` on an event loop that keeps this clock's time."""
        ...


class SystemClock:
    """The real clocks; asyncio's loop time is ``time.monotonic`` too."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)

    def run(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        return anyio.run(func, *args)


SYSTEM_CLOCK = SystemClock()


class VirtualClock:
    """Time that passes only when everything waits; see the module docstring.

    Several runs (``run`` called again, each on a new loop) continue the same time line.
    """

    def __init__(self, wall: datetime | None = None) -> None:
        # Starts where the real clocks are (times recorded by code outside the run still
        # compare sensibly with the run's), then moves only by jumps.
        self._now = self._start = time.monotonic()
        self._wall = wall or datetime.now(UTC)
        # The threads ``anyio.to_thread`` runs are counted by its default limiter (one per
        # loop, known once the loop runs): busy ones are waited for in real time.
        self._threads: list[anyio.CapacityLimiter] = []

    def monotonic(self) -> float:
        return self._now

    def now(self) -> datetime:
        return self._wall + timedelta(seconds=self._now - self._start)

    async def sleep(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        if not isinstance(loop, _VirtualLoop) or loop.clock is not self:
            # anyio.sleep on another loop would wait for real: a slow test, silently.
            raise RuntimeError("a VirtualClock sleeps only on its own loop (clock.run)")
        await anyio.sleep(seconds)

    def run(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        async def main() -> T:
            await self.attach()
            return await func(*args)

        options = {"loop_factory": self.new_loop}
        return anyio.run(main, backend="asyncio", backend_options=options)

    def new_loop(self) -> asyncio.AbstractEventLoop:
        """An event loop on this clock; call ``attach`` from inside it before threads run."""
        return _VirtualLoop(self)

    async def attach(self) -> None:
        """Learn the running loop's worker-thread limiter (``run`` does this itself)."""
        limiter = anyio.to_thread.current_default_thread_limiter()
        if limiter not in self._threads:
            self._threads.append(limiter)

    @staticmethod
    async def current() -> VirtualClock:
        """The clock of the running (virtual) loop, attached to it."""
        loop = asyncio.get_running_loop()
        if not isinstance(loop, _VirtualLoop):
            raise RuntimeError("not running on a VirtualClock's loop")
        await loop.clock.attach()
        return loop.clock

    def _threads_busy(self) -> bool:
        return any(limiter.borrowed_tokens for limiter in self._threads)

    def _advance(self, seconds: float) -> None:
        self._now += seconds


class _JumpingSelector(selectors.DefaultSelector):
    """Where the loop would block until its next timer, jump there instead."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout is None or timeout <= 0:
            # Something to do, or no timer at all: wait as a real loop would (for I/O,
            # a thread, a signal); with nothing to wait for, a real run would hang too.
            return ready if ready or timeout is not None else super().select(None)
        if self._clock._threads_busy():
            # A worker thread's result is on its way: wait for it, not for virtual time.
            ready = super().select(timeout)
            if ready:
                return ready
        self._clock._advance(timeout)
        return []


class _VirtualLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose time is a ``VirtualClock``'s."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        super().__init__(_JumpingSelector(clock))

    def time(self) -> float:
        return self.clock._now
