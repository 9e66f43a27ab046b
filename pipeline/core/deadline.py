"""``anyio.fail_after`` as a class: one request's whole-attempt deadline.

anyio's is a generator-based context manager around another (``fail_at``), each looking up
the async backend: two generators and three lookups for every request, ~3% of a 512 px run's
interpreter time under ``py-spy --gil`` (docs/benchmarks.md). This is the same cancel scope
and the same rule: ``TimeoutError`` when the scope caught its own cancellation (its deadline
passed); any other exception (an outer scope's cancellation included) passes untouched.
"""

from __future__ import annotations

from types import TracebackType

import anyio


class FailAfter:
    """``with FailAfter(delay):`` raises ``TimeoutError`` if the block is still running
    ``delay`` seconds (on the event loop's clock) after the object was made. Its scope is its
    own (``__enter__`` gives nothing): only the deadline can cancel it."""

    __slots__ = ("_scope",)

    def __init__(self, delay: float) -> None:
        self._scope = anyio.CancelScope(deadline=anyio.current_time() + delay)

    def __enter__(self) -> None:
        self._scope.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._scope.__exit__(exc_type, exc, tb):  # it caught its own deadline's cancellation
            raise TimeoutError
