"""Requests in flight, and how long a drain waits for them (``--drain-grace``).

A drain lets in-flight requests finish, because their answers are paid for. But a request
can hang (a server that never answers holds it until its timeout, minutes at 4K), and a
drain that waits it out keeps a Ctrl-C, a deadline or a spending cap from stopping the run.
Each request runs in its own cancel scope; when the run starts draining, every scope gets a
deadline ``grace`` seconds away. A request still going then is abandoned: the caller sees
``cancelled_caught`` and records it as possibly billed (the server may still finish it).

Waits before a request (an ``--rpm`` token) end at once when the run drains: nothing is sent
after that anyway.

A Flex request (once tiers exist) should get its own timeout as its grace instead: a healthy
one may wait minutes for its first byte.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

import anyio

from pipeline.run.control import RunControl


class DrainGrace:
    """The cancel scopes of the requests in flight (one per request, never per row), and of
    the waits before one."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self._scopes: set[anyio.CancelScope] = set()
        self._waits: set[anyio.CancelScope] = set()  # waits to end when the drain begins
        self._deadline = math.inf  # when in-flight requests are abandoned; set by a drain

    def flight(self) -> Flight:
        """Run one request (``with grace.flight() as scope``); ``scope.cancelled_caught``
        afterwards means it was abandoned."""
        return Flight(self)

    @contextmanager
    def wait(self) -> Iterator[None]:
        """Wait for something before sending; the wait ends (silently) when the run drains."""
        scope = anyio.CancelScope()
        if self._deadline != math.inf:
            scope.cancel()
        self._waits.add(scope)
        try:
            with scope:
                yield
        finally:
            self._waits.discard(scope)

    def start_grace(self) -> None:
        """From now on, in-flight requests have ``grace_s`` seconds left."""
        self._deadline = min(self._deadline, anyio.current_time() + self.grace_s)
        for scope in self._scopes:
            scope.deadline = min(scope.deadline, self._deadline)
        for scope in self._waits:
            scope.cancel()

    async def watch(self, control: RunControl) -> None:
        """Start the grace when the run starts draining (run beside the pool)."""
        await control.sleep(math.inf)  # returns as soon as the run drains
        if control.draining:
            self.start_grace()


class Flight:
    """One request's cancel scope, known to the grace while the request runs. A class, not a
    generator-based context manager: every request enters one (docs/benchmarks.md)."""

    __slots__ = ("_grace", "_scope")

    def __init__(self, grace: DrainGrace) -> None:
        self._grace = grace
        self._scope = anyio.CancelScope(deadline=grace._deadline)

    def __enter__(self) -> anyio.CancelScope:
        self._grace._scopes.add(self._scope)
        try:
            return self._scope.__enter__()
        except BaseException:
            self._grace._scopes.discard(self._scope)
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        try:
            return bool(self._scope.__exit__(exc_type, exc, tb))
        finally:
            self._grace._scopes.discard(self._scope)
