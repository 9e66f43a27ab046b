"""What the emulator bills a generation, in micro-dollars (integers, so totals add up exactly).

Google's published prices per output image (standard tier), plus $0.0011 per input image on
3 Pro Image. Flex and the Batch API are half the standard price; Priority costs 75-100 % more
than standard (Google's range): the emulator charges 80 % more. Text and thinking tokens, a
few tenths of a cent, are not billed here. The chat gateway reports the same amount as
``usage.cost``.
"""

from __future__ import annotations

from pipeline.emulator.validate import GenerationRequest

MICROS = 1_000_000

# Keyed by ModelInfo.name: the GA ids share their preview model's info and price.
_IMAGE_MICROS: dict[str, dict[str, int]] = {
    "gemini-2.5-flash-image": {"1K": 39_000},
    "gemini-3-pro-image-preview": {"1K": 134_000, "2K": 134_000, "4K": 240_000},
    "gemini-3.1-flash-image-preview": {"512": 45_000, "1K": 67_000, "2K": 101_000, "4K": 151_000},
}
_INPUT_IMAGE_MICROS: dict[str, int] = {"gemini-3-pro-image-preview": 1_100}

# Price of a tier as a fraction of the standard price, in per mille (integer arithmetic).
TIER_PER_MILLE: dict[str, int] = {"standard": 1000, "flex": 500, "priority": 1800, "batch": 500}


def price_micros(request: GenerationRequest, tier: str) -> int:
    """What one successful generation of ``request`` costs at ``tier``."""
    name = request.model.name
    sizes = _IMAGE_MICROS[name]
    image = sizes.get(request.image_size, sizes["1K"])
    inputs = len(request.images) * _INPUT_IMAGE_MICROS.get(name, 0)
    return (image + inputs) * TIER_PER_MILLE[tier] // 1000


def usd(micros: int) -> float:
    return micros / MICROS
