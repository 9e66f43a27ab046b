"""The policy for Files and Batch API calls (``run.batch.calls.backoff_s``): transient failures
and rate limits are waited out (the server's own wait wins), a full daily quota stops the run
unless ``--on-quota wait``, and nothing else is retried: a bad key or a refused request would
only be refused again (and a retried create could make a second, billed job)."""

from __future__ import annotations

import pytest

from pipeline.core.types import Outcome, OutcomeKind, QuotaScope
from pipeline.run.batch.calls import BACKOFF_CAP_S, MAX_RATE_LIMITED, MAX_TRANSIENT, backoff_s


def outcome(kind: OutcomeKind, **kw: object) -> Outcome:
    return Outcome(kind, "X", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("failure", "attempt", "wait_daily", "expected"),
    [
        (outcome(OutcomeKind.TRANSIENT), 1, False, 5.0),
        (outcome(OutcomeKind.TRANSIENT), 3, False, 20.0),
        (outcome(OutcomeKind.TRANSIENT), 30, False, None),  # gives up: the run stops
        (outcome(OutcomeKind.TRANSIENT, retry_after_s=90.0), 1, False, 90.0),  # server's wait
        (outcome(OutcomeKind.TRANSIENT), MAX_TRANSIENT, False, min(BACKOFF_CAP_S, 5.0 * 2**7)),
        (outcome(OutcomeKind.RATE_LIMIT, retry_after_s=42.0), 1, False, 42.0),
        (outcome(OutcomeKind.RATE_LIMIT), 2, False, 10.0),
        (outcome(OutcomeKind.RATE_LIMIT), MAX_RATE_LIMITED + 1, False, None),
        (outcome(OutcomeKind.RATE_LIMIT, quota=QuotaScope.DAY), 1, False, None),  # stop
        (
            outcome(OutcomeKind.RATE_LIMIT, quota=QuotaScope.DAY, retry_after_s=3600.0),
            1,
            True,
            3600.0,
        ),  # --on-quota wait
        (outcome(OutcomeKind.RUN_ERROR), 1, True, None),  # a bad key: never again
        (outcome(OutcomeKind.ROW_ERROR), 1, True, None),  # a refused create: never again
        (outcome(OutcomeKind.MODEL_ERROR), 1, True, None),
    ],
)
def test_which_call_failures_are_waited_out_and_for_how_long(
    failure: Outcome, attempt: int, wait_daily: bool, expected: float | None
) -> None:
    assert backoff_s(failure, attempt, wait_for_daily_quota=wait_daily) == expected
