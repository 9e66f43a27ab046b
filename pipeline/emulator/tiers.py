"""Service tiers: which one a request asks for, whether it may have it, and Flex shedding.

The Gemini API takes ``"serviceTier": "flex" | "priority" | "standard"`` at the top of the
body. Vertex AI takes two headers (``X-Vertex-AI-LLM-Request-Type: shared`` and
``X-Vertex-AI-LLM-Shared-Request-Type: flex | priority``) and, as google-genai 3.x sends it
there too, the body field; the headers win when both are given. Flex is served on Vertex's
``global`` endpoint only (express mode is global). How Google sheds a Flex request is not
documented: ``--shed-status`` picks 429 or 503, and the bodies below are plausible, not verbatim.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pipeline.emulator.errors import ApiError, invalid_argument, overloaded
from pipeline.emulator.faults import Trigger, unit
from pipeline.emulator.routes import ApiRoute, RouteKind
from pipeline.emulator.specs import FaultKind, FaultSpec


class Tier(StrEnum):
    STANDARD = "standard"
    FLEX = "flex"
    PRIORITY = "priority"


# How Vertex reports the tier that served a request (usageMetadata.trafficType).
TRAFFIC_TYPE: dict[Tier, str] = {
    Tier.STANDARD: "ON_DEMAND",
    Tier.FLEX: "ON_DEMAND_FLEX",
    Tier.PRIORITY: "ON_DEMAND_PRIORITY",
}
REQUEST_TYPE = b"x-vertex-ai-llm-request-type"
SHARED_REQUEST_TYPE = b"x-vertex-ai-llm-shared-request-type"
_TIER_NAMES = {"unspecified": Tier.STANDARD, **{tier.value: tier for tier in Tier}}


@dataclass(frozen=True, slots=True)
class TierChoice:
    """The tier a request gets, and whether it named one (the Gemini API then reports it)."""

    tier: Tier
    asked: bool


def _body_tier(value: object) -> Tier | ApiError | None:
    if value is None:
        return None
    name = value.lower().removeprefix("service_tier_") if isinstance(value, str) else None
    tier = _TIER_NAMES.get(name) if name is not None else None
    if tier is None:
        shown = value if isinstance(value, str) else repr(value)
        message = (
            "Invalid value at 'service_tier' "
            f'(type.googleapis.com/google.ai.generativelanguage.v1beta.ServiceTier), "{shown}"'
        )
        return invalid_argument(message, "service_tier")
    return tier


def _header_tier(headers: dict[bytes, bytes]) -> Tier | None:
    if headers.get(REQUEST_TYPE, b"").strip().lower() != b"shared":
        return None
    shared = headers.get(SHARED_REQUEST_TYPE, b"").strip().lower().decode("latin-1")
    return {"flex": Tier.FLEX, "priority": Tier.PRIORITY}.get(shared)


def choose(
    route: ApiRoute,
    headers: dict[bytes, bytes],
    body_value: object,
    *,
    model_id: str,
    model_name: str,
    no_flex: frozenset[str],
) -> TierChoice | ApiError:
    """The tier for a request, or the 400 a tier it may not have gets."""
    from_body = _body_tier(body_value)
    if isinstance(from_body, ApiError):
        return from_body
    from_headers = _header_tier(headers) if route.vertex else None
    tier = from_headers or from_body
    if tier is None:
        return TierChoice(Tier.STANDARD, asked=False)
    if tier is Tier.FLEX:
        unsupported = f"Flex API is not supported for model: {model_id}"
        if model_id in no_flex or model_name in no_flex:
            return invalid_argument(unsupported + ".")
        if route.kind is RouteKind.VERTEX and route.location != "global":
            return invalid_argument(
                f"{unsupported} in location {route.location}. Flex is served on the global "
                "endpoint only."
            )
    return TierChoice(tier, asked=True)


def is_shed(
    seed: int, spec: FaultSpec, fingerprint: bytes, occurrence: int, triggers: tuple[Trigger, ...]
) -> bool:
    """Whether this Flex attempt is shed: ``#shed`` (``#shedxN``) or a draw at ``shed=RATE``."""
    for trigger in triggers:
        if trigger.kind is FaultKind.SHED and trigger.applies(occurrence):
            return True
    rate = spec.rate(FaultKind.SHED)
    return rate > 0 and unit(seed, "shed", fingerprint, occurrence) < rate


def shed_error(status: int, *, vertex: bool) -> ApiError:
    """A shed Flex request: no QuotaFailure and no RetryInfo, so it reads as capacity, not quota."""
    if status == 429:
        message = "Resource exhausted. Please try again later."
        if vertex:
            message += (
                " Please refer to https://cloud.google.com/vertex-ai/generative-ai/docs/"
                "error-code-429 for more details."
            )
        return ApiError(429, "RESOURCE_EXHAUSTED", message)
    if vertex:
        return ApiError(503, "UNAVAILABLE", "The service is currently unavailable.")
    return overloaded()
