"""The counters of routes, tiers, money and credentials, which ``/_emulator/stats`` adds to the
run's: ``by_route`` (requests and billed generations per route), ``by_tier`` (the same per
service tier, with Flex sheds; ``batch`` counts Batch API requests), ``billed_usd`` (what the
billed generations cost at their tier's price), ``tokens_issued`` / ``token_errors`` (OAuth
and metadata-server answers), ``model_reads`` (unbilled reads of a model's metadata) and the
hosted-image counters of the chat route's ``link`` shape.
"""

from __future__ import annotations

from collections import Counter

from pipeline.emulator.pricing import usd


class RouteCounters:
    """Counters that ``RunState`` embeds; reset with it."""

    def __init__(self) -> None:
        self.by_route: dict[str, Counter[str]] = {}
        self.by_tier: dict[str, Counter[str]] = {}
        self.billed_micros = 0
        self.tokens_issued = 0
        self.token_errors = 0
        self.model_reads = 0
        self.links_fetched = 0
        # Hosted images fetched with a key or token: a client that leaks the gateway's key.
        self.link_fetches_with_key = 0

    def routed(self, route: str) -> None:
        self.by_route.setdefault(route, Counter())["requests"] += 1

    def tiered(self, tier: str, count: int = 1) -> None:
        self.by_tier.setdefault(tier, Counter())["requests"] += count

    def shed(self, tier: str) -> None:
        self.by_tier.setdefault(tier, Counter())["shed"] += 1

    def billed(self, route: str, tier: str, micros: int) -> None:
        self.billed_micros += micros
        for counters in (
            self.by_route.setdefault(route, Counter()),
            self.by_tier.setdefault(tier, Counter()),
        ):
            counters["billed"] += 1
            counters["billed_micros"] += micros

    def snapshot(self) -> dict[str, object]:
        def shown(counters: Counter[str], keys: tuple[str, ...]) -> dict[str, object]:
            out: dict[str, object] = {key: counters[key] for key in keys}
            out["billed_usd"] = usd(counters["billed_micros"])
            return out

        return {
            "by_route": {
                route: shown(c, ("requests", "billed"))
                for route, c in sorted(self.by_route.items())
            },
            "by_tier": {
                tier: shown(c, ("requests", "billed", "shed"))
                for tier, c in sorted(self.by_tier.items())
            },
            "billed_usd": usd(self.billed_micros),
            "tokens_issued": self.tokens_issued,
            "token_errors": self.token_errors,
            "model_reads": self.model_reads,
            "links_fetched": self.links_fetched,
            "link_fetches_with_key": self.link_fetches_with_key,
        }
