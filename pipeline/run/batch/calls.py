"""Calls to the route's Files and Batch APIs under the run's policy: a failure the server or
the network reported (``BatchCallError``) is retried with backoff on the run's clock when it
is transient or a rate limit (a wait the server asked for wins), and stops the run otherwise
(a bad key, no quota today without ``--on-quota wait``), as an online answer would. A drain
ends the waits at once. ``Halted`` unwinds a job's steps: the book already says where it is,
and the next run goes on from there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import structlog

from pipeline.core.types import Outcome, OutcomeKind, QuotaScope
from pipeline.providers.batchapi import BatchCallError, BatchRoute
from pipeline.providers.http import HttpClient
from pipeline.run.executor import RunServices

log = structlog.get_logger("nanobatch")

T = TypeVar("T")

MAX_TRANSIENT = 8  # attempts of one call failing transiently before the run stops
MAX_RATE_LIMITED = 60  # ...and rate-limited (a full job queue may take a while to drain)
BACKOFF_FIRST_S = 5.0
BACKOFF_CAP_S = 300.0


# A failed call that says only that this request was refused, not that the run cannot go on.
# FAILED_PRECONDITION is a run's error for generateContent (a region without the free tier),
# but to a call about one object it is the object's state (cancelling a job that has ended).
_REFUSED = (OutcomeKind.ROW_ERROR, OutcomeKind.MODEL_ERROR)
_NOT_NOW = "FAILED_PRECONDITION"


class Halted(Exception):
    """The run drains or stops: leave this job where its book says it is."""


def backoff_s(outcome: Outcome, attempt: int, *, wait_for_daily_quota: bool) -> float | None:
    """How long to wait before calling again after ``outcome`` (the ``attempt``-th failure in
    a row), or None: retrying cannot help, the run stops. Pure."""
    formula = min(BACKOFF_CAP_S, BACKOFF_FIRST_S * 2.0 ** (attempt - 1))
    match outcome.kind:
        case OutcomeKind.TRANSIENT if attempt <= MAX_TRANSIENT:
            return max(formula, outcome.retry_after_s or 0.0)
        case OutcomeKind.RATE_LIMIT if attempt <= MAX_RATE_LIMITED:
            if outcome.quota is QuotaScope.DAY and not wait_for_daily_quota:
                return None
            return formula if outcome.retry_after_s is None else outcome.retry_after_s
        case _:
            return None


class Calls:
    """Runs route calls for one run, retrying the way the run's policy says."""

    def __init__(self, services: RunServices) -> None:
        self.services = services

    async def do(
        self,
        call: Callable[[], Awaitable[T]],
        *,
        before_retry: Callable[[], Awaitable[T | None]] | None = None,
        refusal_ok: bool = False,
    ) -> T:
        """``call`` until it succeeds. ``before_retry`` looks for what a failed call may have
        done after all (a create whose answer was lost): what it finds is the result.
        ``refusal_ok``: the server refusing this one request (a 400 or 404 about it, not the key
        or the project) raises its ``BatchCallError`` and leaves the run going."""
        control = self.services.control
        attempt = 0
        while True:
            if control.draining:
                raise Halted
            try:
                return await call()
            except BatchCallError as e:
                attempt += 1
                outcome = e.outcome
                retry = self.services.config.retry
                wait = backoff_s(outcome, attempt, wait_for_daily_quota=retry.wait_for_daily_quota)
                if (
                    wait is None
                    and refusal_ok
                    and (outcome.kind in _REFUSED or outcome.reason == _NOT_NOW)
                ):
                    raise
                if wait is None:
                    self.stop(e)
                log.warning("batch.call_retry", call=e.call, reason=outcome.reason, wait_s=wait)
                await control.sleep(wait)
            if before_retry is not None and not control.draining:
                found = await before_retry()
                if found is not None:
                    return found

    def stop(self, error: BatchCallError) -> NoReturn:
        """Stop the run on a failed call that retrying cannot help (a bad key, no quota)."""
        outcome = error.outcome
        log.error("batch.call_failed", call=error.call, reason=outcome.reason,
                  message=outcome.message)  # fmt: skip
        self.services.stop(outcome)
        raise Halted from None


async def delete_file(
    services: RunServices, route: BatchRoute, client: HttpClient, name: str
) -> None:
    """Best effort: a file left behind costs storage for its 48 hours, never the run (Google
    refuses some result ids outright: over 40 characters)."""
    try:
        await route.delete_file(client, name)
    except BatchCallError as e:
        log.warning("batch.file_not_deleted", file=name, reason=e.outcome.reason)
