"""The spending cap, and the one rule for what an attempt may have cost.

``--max-cost`` caps the whole job in an output directory: committed spend (what earlier runs
recorded there, plus this run's settled attempts, plus the reservations of requests in flight)
never passes it. Every request reserves its worst-case price before it is sent; a request that
would pass the cap is not sent, and the run drains. A settled attempt costs what its answer
says was billed (a gateway's ``usage.cost``), else what the price table says for its outcome
(``attempt_cost``), following ``possibly_billed``.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.prices import PriceTable
from pipeline.core.types import Delivery, Job, Outcome, OutcomeKind, Tier

_EPSILON = 1e-9  # float sums of cents must not refuse the last request that exactly fits


@dataclass(slots=True)
class SpendingCap:
    """Spend so far, and what in-flight requests may still add."""

    cap_usd: float | None
    spent_usd: float = 0.0  # settled attempts of this run
    reserved_usd: float = 0.0
    earlier_usd: float = 0.0  # what earlier runs recorded in the same output directory

    def reserve(self, amount: float) -> bool:
        """Hold ``amount`` for one request; False if that would pass the cap."""
        committed = self.earlier_usd + self.spent_usd + self.reserved_usd + amount
        if self.cap_usd is not None and committed > self.cap_usd + _EPSILON:
            return False
        self.reserved_usd += amount
        return True

    def settle(self, reserved: float, cost: float) -> None:
        """Replace a reservation with what the attempt actually cost."""
        self.reserved_usd = max(0.0, self.reserved_usd - reserved)
        self.spent_usd += cost


def worst_case(
    job: Job,
    size: str,
    prices: PriceTable,
    *,
    route: str | None = None,
    fallback: Tier | None = None,
) -> float:
    """What one attempt of ``job`` can cost at most: at its tier, or at the ``fallback`` tier
    when that is dearer (with --tier-fallback standard a Flex row may be resent at standard:
    it reserves the standard price, so a row the cap admits can always be finished)."""
    tiers = {job.tier, fallback or job.tier}
    inputs = len(job.images)
    return max(prices.worst_case(job.model, size, inputs, tier=t, route=route) for t in tiers)


def possibly_billed(outcome: Outcome) -> bool:
    """Whether the server may have charged for this attempt: the one rule, used by the cap,
    the ledger's ``cost_usd``, the attempt history and the summary alike.

    1. Never sent (no connection was made): not billed.
    2. Sent, with no complete answer (a timeout, a connection lost mid-answer, an attempt
       abandoned by a second Ctrl-C): the server may have finished it unseen, so billed.
    3. The server answered that it failed (429, 503, any other error status, or a gateway's
       error object in a 2xx body): Google bills no failed request, so not billed.
    4. A refusal: billed only what the price table's ``refusal_usd`` says (Google: nothing), not
       as an image, so not counted here; except a refusal the route says it charges as a
       generation (``billed_refusal``: Vertex's Model Armor blocks), which is billed.
    5. Any other answer to a generation (a success; a 2xx that could not be parsed; an answer
       whose linked image could not be fetched or whose image could not be stored): billed.
    """
    match outcome.delivery:
        case Delivery.NOT_SENT | Delivery.ERROR:
            return False
        case Delivery.NO_ANSWER:
            return True
        case Delivery.ANSWERED:
            return outcome.kind is not OutcomeKind.REFUSAL or outcome.billed_refusal


def attempt_cost(
    outcome: Outcome, job: Job, size: str, prices: PriceTable, *, route: str | None = None
) -> float:
    """What the server charges for this attempt: what the answer says it billed when it says
    (a gateway's ``usage.cost``), else by the price table at the tier that served it (the
    answer's, else the one asked for): an image's price for a success, the refusal price for a
    refusal (an image's for one the route charges as a generation), the worst case for any
    other attempt that may have been billed (its price cannot be told from what came back),
    else nothing."""
    if outcome.usage.cost_usd is not None:
        return outcome.usage.cost_usd
    tier = outcome.tier or job.tier
    inputs = prices.input_cost(job.model, len(job.images), tier=tier, route=route)
    if outcome.kind is OutcomeKind.SUCCESS:
        images = max(1, len(outcome.images) or len(outcome.image_urls))
        return images * prices.per_image(job.model, size, tier=tier, route=route) + inputs
    if outcome.kind is OutcomeKind.REFUSAL:
        if outcome.billed_refusal:
            return prices.per_image(job.model, size, tier=tier, route=route) + inputs
        return prices.refusal(route) + inputs
    if possibly_billed(outcome):
        return worst_case(job, size, prices, route=route)
    return 0.0
