"""The price table: what one generated image costs, by model and image size, in one place.

Defaults are Google's published prices per output image (standard; batch is half). Gateways
price differently, so the whole table can be overridden with a JSON file (``--prices``):

    {"images": {"gemini-3-pro-image-preview": {"1K": 0.10, "4K": 0.20}},
     "batch_discount": 0.5, "refusal_usd": 0.02,
     "input_image_usd": {"gemini-3-pro-image-preview": 0.0011}}

Only the keys given replace the defaults. Estimates count output images (and input images
where priced); text and thinking tokens are a few tenths of a cent and are not included.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.core.errors import UsageError
from pipeline.core.models import ALIASES

DEFAULT_IMAGE_USD: dict[str, dict[str, float]] = {
    "gemini-2.5-flash-image": {"1K": 0.039},
    "gemini-3-pro-image-preview": {"1K": 0.134, "2K": 0.134, "4K": 0.24},
    "gemini-3.1-flash-image-preview": {"512": 0.045, "1K": 0.067, "2K": 0.101, "4K": 0.151},
}
DEFAULT_INPUT_IMAGE_USD: dict[str, float] = {"gemini-3-pro-image-preview": 0.0011}


@dataclass(frozen=True, slots=True)
class PriceTable:
    """USD per image. Unknown models are priced like the dearest known model at that size, so
    a spending cap errs on the safe side."""

    images: dict[str, dict[str, float]] = field(default_factory=lambda: DEFAULT_IMAGE_USD)
    batch_discount: float = 0.5
    refusal_usd: float = 0.0  # Google does not bill blocked images; some gateways do
    input_image_usd: dict[str, float] = field(default_factory=lambda: DEFAULT_INPUT_IMAGE_USD)

    def _model(self, model: str) -> str:
        model = model.removeprefix("models/")
        model = ALIASES.get(model, model)
        if model not in self.images and f"{model}-preview" in self.images:
            return f"{model}-preview"  # GA name of a preview model
        return model

    def per_image(self, model: str, size: str, *, batch: bool = False) -> float:
        """The price of one output image."""
        sizes = self.images.get(self._model(model))
        if sizes:
            price = sizes.get(size) or sizes.get("1K") or max(sizes.values())
        else:
            price = max(s.get(size, max(s.values())) for s in self.images.values())
        return price * (self.batch_discount if batch else 1.0)

    def input_cost(self, model: str, inputs: int, *, batch: bool = False) -> float:
        """What a request's input images cost (priced for some models only)."""
        discount = self.batch_discount if batch else 1.0
        return inputs * self.input_image_usd.get(self._model(model), 0.0) * discount

    def worst_case(self, model: str, size: str, inputs: int, *, batch: bool = False) -> float:
        """What one request can cost at most: its image (or refusal) plus its input images."""
        output = max(self.per_image(model, size, batch=batch), self.refusal_usd)
        return output + self.input_cost(model, inputs, batch=batch)

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
            images = {m: dict(s) for m, s in table.images.items()}
            for model, sizes in (data.get("images") or {}).items():
                images.setdefault(model, {}).update({k: float(v) for k, v in sizes.items()})
            inputs = dict(table.input_image_usd)
            inputs.update({k: float(v) for k, v in (data.get("input_image_usd") or {}).items()})
            return replace(
                table,
                images=images,
                input_image_usd=inputs,
                batch_discount=float(data.get("batch_discount", table.batch_discount)),
                refusal_usd=float(data.get("refusal_usd", table.refusal_usd)),
            )
        except (AttributeError, TypeError, ValueError) as e:
            raise UsageError(
                f"--prices {path}: expected {{'images': {{model: {{size: usd}}}}, ...}} ({e})"
            ) from None
