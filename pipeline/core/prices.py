"""The price table: what one generated image costs, by (route, model, image size, tier), in
one place.

Defaults are Google's published prices per output image at the standard tier; a tier costs a
fraction of that (Flex and Batch half, Priority 1.8 times: Google says 75-100 % more), input
images included. Vertex AI bills as the Gemini API; a chat gateway bills what it says, so
each route may have its own table. The whole table can be overridden with a JSON file
(``--prices``); only the keys given replace the defaults:

    {"images": {"gemini-3-pro-image-preview": {"1K": 0.10, "4K": 0.20}},
     "tiers": {"flex": 0.5, "priority": 2.0, "batch": 0.5},
     "refusal_usd": 0.02, "input_image_usd": {"gemini-3-pro-image-preview": 0.0011},
     "routes": {"openai-chat": {"images": {"gemini-3.1-flash-image-preview": {"1K": 0.07}},
                                "refusal_usd": 0.0}}}

(``batch_discount`` is the older spelling of ``tiers.batch``.) A route's entry is laid over
the table above it. Estimates count output images (and input images where priced); text and
thinking tokens are a few tenths of a cent and are not included.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.core.errors import UsageError
from pipeline.core.models import ALIASES, GATEWAY_VENDOR
from pipeline.core.types import Tier

DEFAULT_IMAGE_USD: dict[str, dict[str, float]] = {
    "gemini-2.5-flash-image": {"1K": 0.039},
    "gemini-3-pro-image-preview": {"1K": 0.134, "2K": 0.134, "4K": 0.24},
    "gemini-3.1-flash-image-preview": {"512": 0.045, "1K": 0.067, "2K": 0.101, "4K": 0.151},
}
DEFAULT_INPUT_IMAGE_USD: dict[str, float] = {"gemini-3-pro-image-preview": 0.0011}
# A tier's price as a fraction of the standard price.
DEFAULT_TIER_FACTORS: dict[str, float] = {"standard": 1.0, "flex": 0.5, "priority": 1.8}
_MEMO_MAX = 4096  # prices a table remembers


@dataclass(frozen=True, slots=True)
class PriceTable:
    """USD per image. Unknown models are priced like the dearest known model at that size, so
    a spending cap errs on the safe side."""

    images: dict[str, dict[str, float]] = field(default_factory=lambda: DEFAULT_IMAGE_USD)
    batch_discount: float = 0.5  # the Batch API's price, as a fraction of standard
    refusal_usd: float = 0.0  # Google does not bill blocked images; some gateways do
    input_image_usd: dict[str, float] = field(default_factory=lambda: DEFAULT_INPUT_IMAGE_USD)
    tiers: dict[str, float] = field(default_factory=lambda: DEFAULT_TIER_FACTORS)
    routes: dict[str, PriceTable] = field(default_factory=dict)  # a route's own, if it has one
    # Prices already worked out, by what was asked: every attempt asks its worst case and its
    # cost, ~40 calls a time otherwise (docs/benchmarks.md). Never copied by ``replace``.
    _memo: dict[tuple[Any, ...], float] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def route(self, route: str | None) -> PriceTable:
        """The table ``route`` is billed by (this one unless it has its own)."""
        return self.routes.get(route, self) if route else self

    def _model(self, model: str) -> str:
        model = model.removeprefix("models/").removeprefix(GATEWAY_VENDOR)
        model = ALIASES.get(model, model)
        if model not in self.images and f"{model}-preview" in self.images:
            return f"{model}-preview"  # GA name of a preview model
        return model

    def factor(self, tier: Tier | str, *, batch: bool = False) -> float:
        """A tier's price as a fraction of the standard price (Batch: ``batch_discount``)."""
        if batch:
            return self.batch_discount
        return self.tiers.get(str(tier), max(self.tiers.values(), default=1.0))

    def per_image(
        self,
        model: str,
        size: str,
        *,
        batch: bool = False,
        tier: Tier | str = Tier.STANDARD,
        route: str | None = None,
    ) -> float:
        """The price of one output image at ``tier`` on ``route``."""
        key = ("image", model, size, batch, tier, route)
        if (known := self._memo.get(key)) is None:
            known = self._remember(key, self._per_image(model, size, batch, tier, route))
        return known

    def _per_image(
        self, model: str, size: str, batch: bool, tier: Tier | str, route: str | None
    ) -> float:
        table = self.route(route)
        sizes = table.images.get(table._model(model))
        if sizes:
            price = sizes.get(size) or sizes.get("1K") or max(sizes.values())
        else:
            price = max(s.get(size, max(s.values())) for s in table.images.values())
        return price * table.factor(tier, batch=batch)

    def input_cost(
        self,
        model: str,
        inputs: int,
        *,
        batch: bool = False,
        tier: Tier | str = Tier.STANDARD,
        route: str | None = None,
    ) -> float:
        """What a request's input images cost (priced for some models only)."""
        key = ("inputs", model, inputs, batch, tier, route)
        if (known := self._memo.get(key)) is None:
            table = self.route(route)
            each = table.input_image_usd.get(table._model(model), 0.0)
            known = self._remember(key, inputs * each * table.factor(tier, batch=batch))
        return known

    def refusal(self, route: str | None = None) -> float:
        """What a refusal costs on ``route`` (Google: nothing)."""
        return self.route(route).refusal_usd

    def worst_case(
        self,
        model: str,
        size: str,
        inputs: int,
        *,
        batch: bool = False,
        tier: Tier | str = Tier.STANDARD,
        route: str | None = None,
    ) -> float:
        """What one request can cost at most: its image (or refusal) plus its input images."""
        key = ("worst", model, size, inputs, batch, tier, route)
        if (known := self._memo.get(key)) is None:
            image = self.per_image(model, size, batch=batch, tier=tier, route=route)
            output = max(image, self.refusal(route))
            inputs_usd = self.input_cost(model, inputs, batch=batch, tier=tier, route=route)
            known = self._remember(key, output + inputs_usd)
        return known

    def _remember(self, key: tuple[Any, ...], price: float) -> float:
        if len(self._memo) >= _MEMO_MAX:  # a manifest of endless model names: start over
            self._memo.clear()
        self._memo[key] = price
        return price

    @classmethod
    def load(cls, path: Path | None) -> PriceTable:
        """The defaults, with whatever ``path`` overrides."""
        table = cls()
        if path is None:
            return table
        try:
            data: Any = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UsageError(f"--prices {path}: cannot read it as JSON ({e})") from None
        try:
            table = _overlay(table, data)
            routes = data.get("routes") or {}
            return replace(table, routes={str(r): _overlay(table, d) for r, d in routes.items()})
        except (AttributeError, TypeError, ValueError) as e:
            raise UsageError(
                f"--prices {path}: expected {{'images': {{model: {{size: usd}}}}, ...}} ({e})"
            ) from None


def _overlay(table: PriceTable, data: dict[str, Any]) -> PriceTable:
    """``table`` with what ``data`` (one level of a ``--prices`` file) replaces."""
    images = {m: dict(s) for m, s in table.images.items()}
    for model, sizes in (data.get("images") or {}).items():
        images.setdefault(model, {}).update({k: float(v) for k, v in sizes.items()})
    inputs = dict(table.input_image_usd)
    inputs.update({k: float(v) for k, v in (data.get("input_image_usd") or {}).items()})
    tiers = dict(table.tiers)
    given = {str(k): float(v) for k, v in (data.get("tiers") or {}).items()}
    batch = given.pop("batch", data.get("batch_discount", table.batch_discount))
    tiers.update(given)
    return replace(
        table,
        images=images,
        input_image_usd=inputs,
        tiers=tiers,
        batch_discount=float(batch),
        refusal_usd=float(data.get("refusal_usd", table.refusal_usd)),
        routes={},
    )
