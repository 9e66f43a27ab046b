"""What an answer means once the tier a request asked for is known: shared by every route.

The protocol's classifier reads the answer as it would for a standard request; this module
then applies the two readings only a tier makes possible, on evidence, most specific first:

1. A request that named a tier other than standard got a 400 whose message says the tier (or
   ``service_tier``) is not supported or not valid ("Flex API is not supported for model:
   M.") -> ``TIER_NOT_SUPPORTED``, a run-level outcome: every row at that tier would get the
   same answer, so the tier is stopped once (``--tier-fallback standard`` resends at standard),
   never retried row by row. The message is the only evidence Google gives (no ErrorInfo).
2. A Flex request refused for capacity -- a 429 with no quota named and no delay asked, or a
   503 with no delay asked -- was shed -> ``SHED``, transient (backed off, never billed). A 429
   that names its quota or its delay is a rate limit as on any tier.
"""

from __future__ import annotations

from dataclasses import replace

from pipeline.core.tiers import SHED, TIER_NOT_SUPPORTED
from pipeline.core.types import Outcome, OutcomeKind, QuotaScope, Tier

_SHED_STATUSES = (429, 503)


def tier_outcome(outcome: Outcome, asked: Tier) -> Outcome:
    """``outcome`` as it reads for a request at ``asked`` (unchanged for standard)."""
    if asked is Tier.STANDARD:
        return outcome
    if _tier_refused(outcome, asked):
        return replace(outcome, kind=OutcomeKind.RUN_ERROR, reason=TIER_NOT_SUPPORTED)
    if asked is Tier.FLEX and _shed(outcome):
        return replace(outcome, kind=OutcomeKind.TRANSIENT, reason=SHED)
    return outcome


def _tier_refused(outcome: Outcome, asked: Tier) -> bool:
    if outcome.kind is not OutcomeKind.ROW_ERROR or outcome.http_status != 400:
        return False
    text = (outcome.message or "").lower()
    names_tier = asked.value in text or "service_tier" in text or "servicetier" in text
    refuses = "not supported" in text or "invalid value" in text or "not available" in text
    return names_tier and refuses


def _shed(outcome: Outcome) -> bool:
    if outcome.http_status not in _SHED_STATUSES or outcome.retry_after_s is not None:
        return False
    if outcome.kind is OutcomeKind.RATE_LIMIT:
        return outcome.quota is QuotaScope.UNKNOWN  # no quota named: capacity, not quota
    return outcome.kind is OutcomeKind.TRANSIENT
