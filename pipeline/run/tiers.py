"""Tiers a run stops using, and rows moved to the fallback tier: one instance per run, shared
by every worker (so a tier the route refuses is stopped once, not row by row).

A route that answers "Flex API is not supported for model: M" will answer every Flex request
for M the same way. The first such answer stops (tier, model) for the whole run: with
``--tier-fallback standard`` its rows go standard from then on (rows already prepared at the
stopped tier switch before their next attempt); without it the run stops (the retry policy
says so). A row shed past its allowance is moved alone: Flex may have room for the next.
"""

from __future__ import annotations

from dataclasses import replace

import structlog

from pipeline.core.tiers import TIER_NOT_SUPPORTED
from pipeline.core.types import Job, Outcome, Tier
from pipeline.run.result import RunResult

log = structlog.get_logger("nanobatch")


class TierFallback:
    """(tier, model) pairs the route refused; rows moved to the fallback tier."""

    def __init__(self, fallback: Tier | None, result: RunResult) -> None:
        self.fallback = fallback  # --tier-fallback: None, or standard
        self.stopped: dict[tuple[Tier, str], str] = {}  # (tier, model) -> the server's message
        self.result = result  # counts the rows moved, names the tiers stopped (the summary)

    def check(self, job: Job) -> Job | None:
        """``job`` at the fallback tier if its tier was stopped for its model, else None."""
        if self.fallback is None or (job.tier, job.model) not in self.stopped:
            return None
        self.result.fell_back += 1
        return replace(job, tier=self.fallback)

    def fall_back(self, job: Job, outcome: Outcome) -> Job:
        """``job`` at the fallback tier after ``outcome`` (a refused tier stops it for the
        model's other rows too)."""
        assert self.fallback is not None  # the retry policy falls back only with one
        if outcome.reason == TIER_NOT_SUPPORTED and (job.tier, job.model) not in self.stopped:
            why = outcome.message or TIER_NOT_SUPPORTED
            self.stopped[job.tier, job.model] = why
            self.result.tiers_stopped[f"{job.tier.value} for {job.model}"] = why
            log.warning("tier.stopped", tier=job.tier.value, model=job.model,
                        fallback=self.fallback.value)  # fmt: skip
        self.result.fell_back += 1
        return replace(job, tier=self.fallback)
