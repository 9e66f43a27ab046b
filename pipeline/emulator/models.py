"""What each image model accepts and produces: sizes, aspect ratios, pixel dimensions, tokens.

Pixel sizes are the per-aspect-ratio tables of Google's image-generation docs (ai.google.dev):
2.5 Flash has one table; 3 Pro and 3.1 Flash share a 1K table that doubles for 2K and 4K, and
3.1 Flash's "512" is half of 1K. Token counts per output image are the documented ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# The ten ratios every model takes, in the order Google lists them.
COMMON_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
EXTREME_RATIOS = ("1:4", "4:1", "1:8", "8:1")

_FLASH_25_PIXELS: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "2:3": (832, 1248),
    "3:2": (1248, 832),
    "3:4": (864, 1184),
    "4:3": (1184, 864),
    "4:5": (896, 1152),
    "5:4": (1152, 896),
    "9:16": (768, 1344),
    "16:9": (1344, 768),
    "21:9": (1536, 672),
}

_GEMINI_3_PIXELS_1K: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "2:3": (848, 1264),
    "3:2": (1264, 848),
    "3:4": (896, 1200),
    "4:3": (1200, 896),
    "4:5": (928, 1152),
    "5:4": (1152, 928),
    "9:16": (768, 1376),
    "16:9": (1376, 768),
    "21:9": (1584, 672),
    "1:4": (512, 2048),
    "4:1": (2048, 512),
    "1:8": (384, 3072),
    "8:1": (3072, 384),
}

_SIZE_SCALE = {"512": 0.5, "1K": 1.0, "2K": 2.0, "4K": 4.0}


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One image model's capabilities.

    ``sizes`` empty means the model takes no ``imageSize`` at all (sending one is an error).
    """

    name: str
    thinks: bool
    mime_type: str
    sizes: tuple[str, ...]
    default_size: str
    ratios: tuple[str, ...]
    output_tokens: tuple[tuple[str, int], ...]
    input_image_tokens: int
    short_name: str

    def pixels(self, size: str, ratio: str) -> tuple[int, int]:
        """Output width and height for a validated (imageSize, aspectRatio)."""
        if not self.sizes:
            return _FLASH_25_PIXELS[ratio]
        width, height = _GEMINI_3_PIXELS_1K[ratio]
        scale = _SIZE_SCALE[size]
        return round(width * scale), round(height * scale)

    def image_tokens(self, size: str) -> int:
        return dict(self.output_tokens)[size if self.sizes else "1K"]

    def nearest_ratio(self, width: int, height: int) -> str:
        """The supported aspect ratio closest to a picture's own (used to follow an input)."""
        if width <= 0 or height <= 0:
            return "1:1"
        target = math.log(width / height)

        def distance(ratio: str) -> float:
            w, h = ratio.split(":")
            return abs(math.log(int(w) / int(h)) - target)

        return min(self.ratios, key=distance)


FLASH_25 = ModelInfo(
    name="gemini-2.5-flash-image",
    thinks=False,
    mime_type="image/png",
    sizes=(),
    default_size="1K",
    ratios=COMMON_RATIOS,
    output_tokens=(("1K", 1290),),
    input_image_tokens=258,
    short_name="2.5 Flash",
)
PRO_3 = ModelInfo(
    name="gemini-3-pro-image-preview",
    thinks=True,
    # 3 Pro has been seen answering with JPEG in the wild; the Flash models answer with PNG.
    mime_type="image/jpeg",
    sizes=("1K", "2K", "4K"),
    default_size="1K",
    ratios=COMMON_RATIOS,
    output_tokens=(("1K", 1120), ("2K", 1120), ("4K", 2000)),
    input_image_tokens=560,
    short_name="3 Pro",
)
FLASH_31 = ModelInfo(
    name="gemini-3.1-flash-image-preview",
    thinks=True,
    mime_type="image/png",
    sizes=("512", "1K", "2K", "4K"),
    default_size="1K",
    ratios=COMMON_RATIOS + EXTREME_RATIOS,
    output_tokens=(("512", 747), ("1K", 1120), ("2K", 1680), ("4K", 2520)),
    input_image_tokens=560,
    short_name="3.1 Flash",
)

MODELS: dict[str, ModelInfo] = {
    "gemini-2.5-flash-image": FLASH_25,
    "gemini-3-pro-image-preview": PRO_3,
    "gemini-3-pro-image": PRO_3,
    "gemini-3.1-flash-image-preview": FLASH_31,
    "gemini-3.1-flash-image": FLASH_31,
}


def find_model(model: str) -> ModelInfo | None:
    """Look up a model id as it appears in a URL (``models/`` prefix tolerated)."""
    return MODELS.get(model.removeprefix("models/"))
