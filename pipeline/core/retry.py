"""The retry policy: (outcome, what this row has used so far) -> one decision.

Each outcome kind has exactly one policy. Refusals are final within a run (the same prompt is
refused again, and some gateways bill refusals; ``--rerun refused`` sends them again in a later
run); a 429 waits what the server asked; transient faults back off exponentially with jitter;
a per-day quota stops the run (or, with --on-quota wait, sleeps until it resets); a bad key
stops the run; a model no row can use (unknown, or with a quota of 0) fails the rows of that
model, never retried. A shed Flex request backs off like a transient fault, on an allowance
of its own (``max_sheds``); past it, or when the route does not offer the tier at all, a row
falls back to standard with ``--tier-fallback standard``, else it fails (sheds) or the run
stops (the tier is not offered: every row of the tier would meet the same answer).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from pipeline.core.config import RetryConfig
from pipeline.core.tiers import SHED, TIER_NOT_SUPPORTED
from pipeline.core.types import Outcome, OutcomeKind, QuotaScope, Status

TEXT_ONLY_REASONS = frozenset({"NO_IMAGE", "TEXT_ONLY"})
PACIFIC = ZoneInfo("America/Los_Angeles")


class Action(StrEnum):
    FINISH = "finish"  # record the row with ``status``
    RETRY = "retry"  # wait ``wait_s``, then send again
    STOP_RUN = "stop_run"  # the run cannot go on; the row stays pending
    FAIL_MODEL = "fail_model"  # fail this row and every other row of its model, unsent
    FALL_BACK = "fall_back"  # send the row again at the fallback tier (--tier-fallback)


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    status: Status | None = None
    wait_s: float = 0.0
    pause_pool: bool = False  # the server asked everyone to wait, not just this row


@dataclass(slots=True)
class Budget:
    """What one row has used of its retry allowance."""

    transient: int = 0  # attempts that ended in a transient fault
    text_only: int = 0
    rate_limit_wait_s: float = 0.0
    sheds: int = 0  # Flex attempts shed


def backoff(n: int, config: RetryConfig, rng: random.Random) -> float:
    """Wait before the n-th retry (n >= 1): base x 2^(n-1), capped, plus jitter."""
    base = min(config.backoff_cap_s, config.backoff_base_s * 2.0 ** (n - 1))
    return base + rng.uniform(0, config.jitter_s)


def seconds_until_quota_reset(now: datetime | None = None) -> float:
    """Gemini's per-day quotas reset at midnight Pacific time."""
    local = (now or datetime.now(PACIFIC)).astimezone(PACIFIC)
    midnight = datetime.combine(local.date() + timedelta(days=1), time(0), PACIFIC)
    return (midnight - local).total_seconds()


def decide(
    outcome: Outcome,
    budget: Budget,
    config: RetryConfig,
    rng: random.Random,
    now: datetime | None = None,
) -> Decision:
    """The one action for this outcome; updates ``budget`` when it chooses to retry."""
    match outcome.kind:
        case OutcomeKind.SUCCESS:
            return Decision(Action.FINISH, Status.SUCCEEDED)
        case OutcomeKind.RUN_ERROR:
            if outcome.reason == TIER_NOT_SUPPORTED and config.fallback is not None:
                return Decision(Action.FALL_BACK)
            return Decision(Action.STOP_RUN)
        case OutcomeKind.ROW_ERROR:
            return Decision(Action.FINISH, Status.FAILED)
        case OutcomeKind.MODEL_ERROR:
            return Decision(Action.FAIL_MODEL, Status.FAILED)
        case OutcomeKind.REFUSAL:
            if outcome.reason in TEXT_ONLY_REASONS and budget.text_only < config.text_only_retries:
                budget.text_only += 1
                return Decision(Action.RETRY, wait_s=rng.uniform(0, config.jitter_s))
            return Decision(Action.FINISH, Status.REFUSED)
        case OutcomeKind.RATE_LIMIT:
            if outcome.quota is QuotaScope.DAY:
                if not config.wait_for_daily_quota:
                    return Decision(Action.STOP_RUN)
                # Sleep until the quota resets; this is not the row's fault, so no budget.
                wait = max(outcome.retry_after_s or 0.0, seconds_until_quota_reset(now))
                return Decision(Action.RETRY, wait_s=wait + rng.uniform(0, 60), pause_pool=True)
            # The server's own delay when it gave one; a little jitter so the pool does not
            # return as one burst the instant the window opens.
            if outcome.retry_after_s is not None:
                wait = outcome.retry_after_s + rng.uniform(0, min(config.jitter_s, 0.5))
            else:
                wait = backoff(budget.transient + 1, config, rng)
            if budget.rate_limit_wait_s + wait > config.max_rate_limit_wait_s:
                return Decision(Action.FINISH, Status.FAILED)
            budget.rate_limit_wait_s += wait
            return Decision(Action.RETRY, wait_s=wait, pause_pool=True)
        case OutcomeKind.TRANSIENT if outcome.reason == SHED:
            budget.sheds += 1
            if budget.sheds >= config.max_sheds:
                if config.fallback is not None:
                    return Decision(Action.FALL_BACK)
                return Decision(Action.FINISH, Status.FAILED)
            return Decision(Action.RETRY, wait_s=backoff(budget.sheds, config, rng))
        case OutcomeKind.TRANSIENT:
            budget.transient += 1
            if budget.transient >= config.max_attempts:
                return Decision(Action.FINISH, Status.FAILED)
            wait = backoff(budget.transient, config, rng)
            if outcome.retry_after_s is not None:
                wait = max(wait, outcome.retry_after_s)
            return Decision(Action.RETRY, wait_s=wait)
    raise AssertionError(f"unhandled outcome kind {outcome.kind!r}")  # a bug: fail loudly
