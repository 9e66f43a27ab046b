"""Service tiers: what a tier changes for a request besides its price (``prices``): how long
to wait for it, how many to keep in flight, and how an answer says which tier served it.

Flex is the same synchronous call at half price, best effort: Google may hold a request up
to ~15 minutes before the first byte, or shed it (an error answer, not billed). Priority is
the same call, dearer, for latency-critical work.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.core.errors import UsageError
from pipeline.core.types import Tier

# A Flex request may wait ~15 minutes for capacity before its generation starts, and a 4K
# generation takes up to 150 s more: 20 minutes, so an honest Flex answer is never abandoned
# (an abandoned request is still billed if the server finishes it).
FLEX_TIMEOUT_S = 1200.0

# --concurrency when it is not given. Rows per hour = requests in flight / time per request,
# and a quota counts requests per minute, not requests in flight. A Flex answer takes about
# eight times as long as a standard one (a typical 4 minutes against 30 s), so with
# ``--tier flex`` eight times as many are kept in flight: the same rows per hour, and the
# same requests per minute against the quota, as a standard run.
DEFAULT_CONCURRENCY = 16
FLEX_CONCURRENCY_FACTOR = 8

# How a Flex row that keeps being shed ends: after this many sheds (about 5 minutes of
# backoff: 3 s doubling, capped at 60 s) it fails (SHED; a rerun sends it again), or with
# --tier-fallback standard it is resent at standard.
MAX_SHEDS = 10

SHED = "SHED"  # the reason of a Flex request the server shed: transient, never billed
TIER_NOT_SUPPORTED = "TIER_NOT_SUPPORTED"  # the route does not offer the tier for the model


def parse_tier(text: str, where: str = "--tier") -> Tier:
    """``flex`` -> ``Tier.FLEX``; a message naming the choices otherwise."""
    try:
        return Tier(text.strip().lower())
    except ValueError:
        names = ", ".join(t.value for t in Tier)
        raise UsageError(f"{where} {text!r}: use one of {names}") from None


def parse_fallback(text: str | None) -> Tier | None:
    """``--tier-fallback standard``: the only tier a shed or refused tier falls back to."""
    if text is None or text.strip().lower() in ("", "none"):
        return None
    if text.strip().lower() != Tier.STANDARD.value:
        raise UsageError(f"--tier-fallback {text!r}: the only fallback is standard (or none)")
    return Tier.STANDARD


def default_concurrency(tier: Tier) -> int:
    """``--concurrency`` when the user gave none (see ``FLEX_CONCURRENCY_FACTOR``)."""
    if tier is Tier.FLEX:
        return DEFAULT_CONCURRENCY * FLEX_CONCURRENCY_FACTOR
    return DEFAULT_CONCURRENCY


def request_timeout(timeouts: Mapping[str, float], size: str, tier: Tier) -> float:
    """The whole attempt's timeout: the size's (``--timeouts 4K=600``), and for a tier with
    its own (``flex=1200``; Flex has one by default) the longer of the two."""
    sizes = [v for k, v in timeouts.items() if k not in _TIER_KEYS]
    by_size = timeouts.get(size, max(sizes, default=FLEX_TIMEOUT_S))
    by_tier = timeouts.get(tier.value, FLEX_TIMEOUT_S if tier is Tier.FLEX else 0.0)
    return max(by_size, by_tier)


_TIER_KEYS = frozenset(t.value for t in Tier)

# How answers name the tier that served them: the Gemini API's usageMetadata.serviceTier
# (``flex``, or the enum's ``SERVICE_TIER_FLEX``), Vertex's usageMetadata.trafficType, a chat
# gateway's ``service_tier`` (OpenAI's ``default`` is standard).
_REPORTED: dict[str, Tier] = {
    "standard": Tier.STANDARD,
    "default": Tier.STANDARD,
    "on_demand": Tier.STANDARD,
    "flex": Tier.FLEX,
    "on_demand_flex": Tier.FLEX,
    "priority": Tier.PRIORITY,
    "on_demand_priority": Tier.PRIORITY,
}


def reported_tier(value: object) -> Tier | None:
    """The tier an answer says served it; None when it says nothing we know (provisioned
    throughput, a new name): the tier asked for is then recorded as not reported."""
    if not isinstance(value, str):
        return None
    return _REPORTED.get(value.strip().lower().removeprefix("service_tier_"))
