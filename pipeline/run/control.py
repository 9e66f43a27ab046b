"""Stopping a run well: drain (no new requests, in-flight ones finish, everything recorded)
or cancel (abandon in-flight requests at once, still record what was received).

The first SIGINT/SIGTERM/SIGHUP, a deadline, the spending cap or a run-level API error drain; a
second signal cancels. Waits in the pool (backoff, a shared 429 pause) end early on drain,
so a drained run exits promptly instead of sleeping out a minute-long retry delay.
"""

from __future__ import annotations

import math
import signal
from datetime import datetime
from enum import StrEnum

import anyio
import structlog

from pipeline.core.clock import SYSTEM_CLOCK, Clock
from pipeline.core.logs import RUN_LOG, TERMINAL

log = structlog.get_logger("nanobatch")


class Halt(StrEnum):
    """Why a run stopped before its manifest was done."""

    API = "api"  # key, permission, model, daily quota: exit 3
    COST_CAP = "cost_cap"  # --max-cost reached: exit 4
    DEADLINE = "deadline"  # --stop-after / --stop-at: exit 4
    INTERRUPTED = "interrupted"  # SIGINT / SIGTERM / SIGHUP: exit 130
    DISK_FULL = "disk_full"  # the output disk is full, read-only or failing: exit 5


class RunControl:
    """Shared by the producer and every worker: whether to keep going."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        self.halt: Halt | None = None
        self.cancelled = False
        self._drained = anyio.Event()
        self._cancel_scope: anyio.CancelScope | None = None

    @property
    def draining(self) -> bool:
        return self.halt is not None

    def drain(self, halt: Halt) -> None:
        """Stop sending new requests; the first reason given is the one reported."""
        if self.halt is None:
            self.halt = halt
            self._drained.set()
            log.warning("run.draining", reason=halt.value)

    def attach(self, scope: anyio.CancelScope) -> None:
        """The scope that holds the in-flight requests, for ``cancel``."""
        self._cancel_scope = scope

    def cancel(self) -> None:
        """Abandon in-flight requests now (received answers are still recorded)."""
        self.cancelled = True
        if self._cancel_scope is not None:
            self._cancel_scope.cancel()
        log.warning("run.cancelled")

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake up as soon as the run starts draining."""
        if seconds > 0 and not self.draining:
            with anyio.move_on_after(seconds):
                await self._drained.wait()

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until a deadline on the run's ``clock.monotonic``, or until the run drains."""
        await self.sleep(deadline - self.clock.monotonic())

    async def watch_signals(self) -> None:
        """First SIGINT/SIGTERM/SIGHUP drains, a second SIGINT/SIGTERM cancels.

        A hang-up (terminal closed, ssh dropped) also means the console is gone: output
        continues in run.log only. It never cancels, however many arrive: nobody at a closed
        terminal asked to abandon requests that are already paid for. Under ``nohup`` (SIGHUP
        ignored from the start) hang-ups stay ignored, as the user asked.
        """
        watched = [signal.SIGINT, signal.SIGTERM]
        if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
            watched.append(signal.SIGHUP)
        with anyio.open_signal_receiver(*watched) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    TERMINAL.detach()
                    log.warning("run.signal", signal="SIGHUP", action="drain", console=RUN_LOG)
                    self.drain(Halt.INTERRUPTED)
                elif not self.draining:
                    log.warning("run.signal", signal=signal.Signals(signum).name, action="drain")
                    self.drain(Halt.INTERRUPTED)
                else:
                    log.warning("run.signal", signal=signal.Signals(signum).name, action="cancel")
                    self.cancel()

    async def watch_deadline(self, stop_at: datetime) -> None:
        """Drain when the wall clock reaches ``stop_at``."""
        remaining = (stop_at - self.clock.now()).total_seconds()
        await self.clock.sleep(max(0.0, remaining) if math.isfinite(remaining) else 0.0)
        self.drain(Halt.DEADLINE)
