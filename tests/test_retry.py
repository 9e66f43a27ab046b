"""The retry policy: one action per outcome kind, budgets, and the server's own delays."""

from __future__ import annotations

import random
from datetime import datetime

import pytest

from pipeline.core.config import RetryConfig
from pipeline.core.retry import PACIFIC, Action, Budget, backoff, decide, seconds_until_quota_reset
from pipeline.core.types import Outcome, OutcomeKind, QuotaScope, Status

CONFIG = RetryConfig(max_attempts=5, backoff_base_s=3.0, backoff_cap_s=60.0, jitter_s=1.0)


def outcome(kind: OutcomeKind, reason: str = "X", **kw: object) -> Outcome:
    return Outcome(kind=kind, reason=reason, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "reason", "action", "status"),
    [
        (OutcomeKind.SUCCESS, "STOP", Action.FINISH, Status.SUCCEEDED),
        (OutcomeKind.REFUSAL, "IMAGE_SAFETY", Action.FINISH, Status.REFUSED),
        (OutcomeKind.REFUSAL, "PROMPT_BLOCKED:SAFETY", Action.FINISH, Status.REFUSED),
        (OutcomeKind.ROW_ERROR, "INVALID_REQUEST", Action.FINISH, Status.FAILED),
        (OutcomeKind.RUN_ERROR, "API_KEY_INVALID", Action.STOP_RUN, None),
        (OutcomeKind.MODEL_ERROR, "MODEL_NOT_FOUND", Action.FAIL_MODEL, Status.FAILED),
        (OutcomeKind.MODEL_ERROR, "NO_QUOTA", Action.FAIL_MODEL, Status.FAILED),
        (OutcomeKind.TRANSIENT, "SERVER_ERROR_503", Action.RETRY, None),
    ],
)
def test_each_kind_has_one_action(
    kind: OutcomeKind, reason: str, action: Action, status: Status | None
) -> None:
    decision = decide(outcome(kind, reason), Budget(), CONFIG, random.Random(0))
    assert decision.action is action
    assert decision.status is status


def test_refusals_are_final_within_a_run() -> None:
    # One mechanism resends refusals: --rerun refused (alias --retry-refused), in a later run.
    refusal = outcome(OutcomeKind.REFUSAL, "IMAGE_SAFETY")
    budget = Budget()
    decisions = [decide(refusal, budget, CONFIG, random.Random(0)) for _ in range(3)]
    assert [(d.action, d.status) for d in decisions] == [(Action.FINISH, Status.REFUSED)] * 3


def test_text_only_answers_get_their_own_small_budget() -> None:
    text_only = outcome(OutcomeKind.REFUSAL, "TEXT_ONLY")
    budget = Budget()
    first = decide(text_only, budget, CONFIG, random.Random(0))
    second = decide(text_only, budget, CONFIG, random.Random(0))
    assert (first.action, second.action) == (Action.RETRY, Action.FINISH)
    assert second.status is Status.REFUSED


def test_transient_errors_back_off_exponentially_until_the_budget_is_spent() -> None:
    budget = Budget()
    rng = random.Random(1)
    waits = []
    for _ in range(4):
        d = decide(outcome(OutcomeKind.TRANSIENT, "SERVER_ERROR_500"), budget, CONFIG, rng)
        assert d.action is Action.RETRY
        waits.append(d.wait_s)
    last = decide(outcome(OutcomeKind.TRANSIENT, "SERVER_ERROR_500"), budget, CONFIG, rng)
    assert last.action is Action.FINISH
    assert last.status is Status.FAILED
    for n, wait in enumerate(waits):
        assert 3.0 * 2**n <= wait <= 3.0 * 2**n + 1.0


def test_backoff_is_capped() -> None:
    assert 60.0 <= backoff(20, CONFIG, random.Random(0)) <= 61.0


def test_rate_limit_waits_the_servers_delay_and_pauses_the_pool() -> None:
    limited = outcome(OutcomeKind.RATE_LIMIT, "RATE_LIMITED", retry_after_s=31.0,
                      quota=QuotaScope.MINUTE)  # fmt: skip
    budget = Budget()
    decisions = [decide(limited, budget, CONFIG, random.Random(0)) for _ in range(10)]
    # Per-minute 429s do not burn the attempt budget: ten in a row are still retried.
    assert all(d.action is Action.RETRY and d.pause_pool for d in decisions)
    assert all(31.0 <= d.wait_s <= 31.5 for d in decisions)


def test_rate_limit_gives_up_after_the_total_wait_allowance() -> None:
    limited = outcome(OutcomeKind.RATE_LIMIT, "RATE_LIMITED", retry_after_s=400.0)
    budget = Budget()
    actions = [decide(limited, budget, CONFIG, random.Random(0)).action for _ in range(6)]
    assert actions[:4] == [Action.RETRY] * 4
    assert actions[-1] is Action.FINISH


def test_a_daily_quota_stops_the_run() -> None:
    daily = outcome(OutcomeKind.RATE_LIMIT, "QUOTA_EXHAUSTED", quota=QuotaScope.DAY)
    assert decide(daily, Budget(), CONFIG, random.Random(0)).action is Action.STOP_RUN


def test_on_quota_wait_sleeps_until_the_pacific_midnight_reset() -> None:
    daily = outcome(OutcomeKind.RATE_LIMIT, "QUOTA_EXHAUSTED", quota=QuotaScope.DAY)
    config = RetryConfig(wait_for_daily_quota=True)
    ten_pm = datetime(2026, 11, 21, 22, 0, tzinfo=PACIFIC)
    decision = decide(daily, Budget(), config, random.Random(0), now=ten_pm)
    assert decision.action is Action.RETRY
    assert decision.pause_pool
    assert 2 * 3600 <= decision.wait_s <= 2 * 3600 + 60


def test_quota_reset_is_computed_across_daylight_saving_changes() -> None:
    before_dst_ends = datetime(2026, 10, 31, 23, 0, tzinfo=PACIFIC)
    assert seconds_until_quota_reset(before_dst_ends) == 3600
