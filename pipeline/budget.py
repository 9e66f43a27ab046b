"""The spending cap: every request reserves its worst-case price before it is sent.

Committed spend (settled + reserved) never passes the cap, however many requests are in
flight: a request that would pass it is not sent, and the run drains. A settled attempt
costs what the price table says for its outcome: an image's price for a success, the
refusal price for a refusal, the worst case for an attempt the server may have finished
unseen (a timeout), nothing for an error the server did not bill.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.prices import PriceTable
from pipeline.types import Job, Outcome, OutcomeKind

_EPSILON = 1e-9  # float sums of cents must not refuse the last request that exactly fits


@dataclass(slots=True)
class SpendingCap:
    """Spend so far, and what in-flight requests may still add."""

    cap_usd: float | None
    spent_usd: float = 0.0
    reserved_usd: float = 0.0

    def reserve(self, amount: float) -> bool:
        """Hold ``amount`` for one request; False if that would pass the cap."""
        committed = self.spent_usd + self.reserved_usd + amount
        if self.cap_usd is not None and committed > self.cap_usd + _EPSILON:
            return False
        self.reserved_usd += amount
        return True

    def settle(self, reserved: float, cost: float) -> None:
        """Replace a reservation with what the attempt actually cost."""
        self.reserved_usd = max(0.0, self.reserved_usd - reserved)
        self.spent_usd += cost


def worst_case(job: Job, size: str, prices: PriceTable) -> float:
    """What one attempt of ``job`` can cost at most."""
    return prices.worst_case(job.model, size, len(job.images))


def attempt_cost(
    outcome: Outcome, possibly_billed: bool, job: Job, size: str, prices: PriceTable
) -> float:
    """What the server charges for this attempt, by the price table."""
    inputs = prices.input_cost(job.model, len(job.images))
    if outcome.kind is OutcomeKind.SUCCESS:
        images = max(1, len(outcome.images) or len(outcome.image_urls))
        return images * prices.per_image(job.model, size) + inputs
    if outcome.kind is OutcomeKind.REFUSAL:
        return prices.refusal_usd + inputs
    if possibly_billed:  # a timeout or a dropped connection: it may have been finished unseen
        return worst_case(job, size, prices)
    return 0.0
