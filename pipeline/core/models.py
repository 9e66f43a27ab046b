"""The model capability table: one place that knows what each Gemini image model accepts.

Everything that validates or builds a request asks this table, so a new model or a new image
size is a one-line change here.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass

from pipeline.core.types import Job

DEFAULT_MODEL = "gemini-3.1-flash-image-preview"

_BASE_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What one model accepts and how its output is priced and sized."""

    model_id: str
    image_sizes: tuple[str, ...]  # empty: the model rejects imageConfig.imageSize
    default_size: str  # the size the model produces when none is sent ("1K")
    aspect_ratios: tuple[str, ...]
    max_input_images: int
    max_input_tokens: int = 65_536  # prompt, system instruction and input images together


MODELS: dict[str, ModelSpec] = {
    spec.model_id: spec
    for spec in (
        ModelSpec("gemini-2.5-flash-image", (), "1K", _BASE_RATIOS, 14, 32_768),
        ModelSpec("gemini-3-pro-image-preview", ("1K", "2K", "4K"), "1K", _BASE_RATIOS, 14),
        ModelSpec(
            "gemini-3.1-flash-image-preview",
            ("512", "1K", "2K", "4K"),
            "1K",
            (*_BASE_RATIOS, "1:4", "4:1", "1:8", "8:1"),
            14,
        ),
    )
}

# Gateway nicknames and GA names (without -preview) resolve to the table's ids.
ALIASES: dict[str, str] = {
    "nano-banana": "gemini-2.5-flash-image",
    "nano-banana-pro": "gemini-3-pro-image-preview",
    "nano-banana-2": "gemini-3.1-flash-image-preview",
    "gemini-3-pro-image": "gemini-3-pro-image-preview",
    "gemini-3.1-flash-image": "gemini-3.1-flash-image-preview",
}


# Chat gateways name Google's models with a vendor prefix (``google/gemini-2.5-flash-image``).
GATEWAY_VENDOR = "google/"


def resolve_model(name: str) -> tuple[str, ModelSpec | None]:
    """Map a user-given model name to the id to send and its spec (None: unknown to us).

    GA names are sent as written (the API accepts both); only nicknames are rewritten. A
    gateway's ``google/`` id is looked up without its prefix and sent as written.
    An unknown model is not an error here (new models appear before this table knows them):
    ``validate`` warns, and the server has the last word (a 404 fails that model's rows).
    """
    name = name.strip().removeprefix("models/")
    bare = name.removeprefix(GATEWAY_VENDOR)
    canonical = ALIASES.get(bare, bare)
    # A gateway's id ("google/...") is the gateway's own name: sent as written.
    sent = name if name.startswith("gemini-") or bare != name else canonical
    return sent, MODELS.get(canonical)


def effective_size(job: Job) -> str:
    """The output size ``job`` will get: its own, else its model's default (what it is priced
    and timed by)."""
    if job.image_size:
        return job.image_size
    _, spec = resolve_model(job.model)
    return spec.default_size if spec else "1K"


# What a model id may look like, by where it travels. In a URL path (the native route) only
# [A-Za-z0-9._-]: nothing that could reach another path or query; it is percent-encoded too.
# Gateways that take the id in a JSON body use vendor prefixes ("google/...", ":free").
MODEL_ID_IN_PATH = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MODEL_ID_IN_BODY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,255}")


def check_model_id(model: str, *, in_path: bool = True) -> str | None:
    """Why ``model`` cannot be sent as a model id on its route, or None when it can."""
    pattern = MODEL_ID_IN_PATH if in_path else MODEL_ID_IN_BODY
    if pattern.fullmatch(model):
        return None
    allowed = "letters, digits, '.', '_', '-'" + ("" if in_path else ", '/', ':'")
    shown = repr(model) if len(model) <= 60 else repr(model[:60]) + "..."
    return f"{shown} is not a model id: use only {allowed} (e.g. {DEFAULT_MODEL})"


# Text runs at about 4 characters per token (English; other scripts take more tokens per
# character, so this errs on letting a prompt through: the server has the last word).
CHARS_PER_TOKEN = 4
UNKNOWN_MODEL_INPUT_TOKENS = 1_048_576  # the largest Gemini context: only absurd text is stopped


def check_prompt_length(spec: ModelSpec | None, model: str, chars: int) -> str | None:
    """Why ``chars`` characters of prompt (and system instruction) are more than the model takes,
    or None."""
    limit = spec.max_input_tokens if spec else UNKNOWN_MODEL_INPUT_TOKENS
    if chars <= limit * CHARS_PER_TOKEN:
        return None
    return (
        f"the prompt is {chars:,} characters (~{chars // CHARS_PER_TOKEN:,} tokens); {model} "
        f"takes at most {limit:,} input tokens (~{limit * CHARS_PER_TOKEN:,} characters): "
        "shorten it"
    )


def unknown_model(name: str) -> str:
    """Names a model id the table does not know, with a did-you-mean when one is close."""
    known = [*MODELS, *ALIASES]
    close = difflib.get_close_matches(name.strip().removeprefix("models/"), known, n=1)
    return f"unknown model {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def check_image_size(spec: ModelSpec, size: str) -> str | None:
    """Return why ``size`` is not accepted by the model, or None when it is."""
    if not spec.image_sizes:
        return f"{spec.model_id} takes no image_size (it always makes ~1K images); leave it empty"
    if size in spec.image_sizes:
        return None
    allowed = ", ".join(spec.image_sizes)
    upper = size.upper()
    hint = f" (sizes are case-sensitive: {upper!r})" if upper in spec.image_sizes else ""
    return f"{size!r} is not an image size of {spec.model_id}: use one of {allowed}{hint}"


def check_aspect_ratio(spec: ModelSpec, ratio: str) -> str | None:
    """Return why ``ratio`` is not accepted by the model, or None when it is."""
    if ratio in spec.aspect_ratios:
        return None
    allowed = ", ".join(spec.aspect_ratios)
    return f"{ratio!r} is not an aspect ratio of {spec.model_id}: use one of {allowed}"


# Documented output pixels: 2.5 Flash (always ~1K), and the Gemini 3 models at 1K (2K and 4K
# double and quadruple, 512 halves). Kept here, apart from the emulator's own table, so the
# client's mapping of a user's WxH is checked against an independent reading of the docs.
_PIXELS_25: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024), "2:3": (832, 1248), "3:2": (1248, 832), "3:4": (864, 1184),
    "4:3": (1184, 864), "4:5": (896, 1152), "5:4": (1152, 896), "9:16": (768, 1344),
    "16:9": (1344, 768), "21:9": (1536, 672),
}  # fmt: skip
_PIXELS_3_1K: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024), "2:3": (848, 1264), "3:2": (1264, 848), "3:4": (896, 1200),
    "4:3": (1200, 896), "4:5": (928, 1152), "5:4": (1152, 928), "9:16": (768, 1376),
    "16:9": (1376, 768), "21:9": (1584, 672), "1:4": (512, 2048), "4:1": (2048, 512),
    "1:8": (384, 3072), "8:1": (3072, 384),
}  # fmt: skip
_SCALE = {"512": 0.5, "1K": 1.0, "2K": 2.0, "4K": 4.0}


def output_pixels(spec: ModelSpec, size: str | None, ratio: str) -> tuple[int, int]:
    """The documented output size in pixels for a model, image size and aspect ratio."""
    if not spec.image_sizes:
        return _PIXELS_25[ratio]
    w, h = _PIXELS_3_1K[ratio]
    scale = _SCALE[size or spec.default_size]
    return round(w * scale), round(h * scale)


@dataclass(frozen=True, slots=True)
class SizeChoice:
    """A user's ``WxH`` mapped onto what the model can make."""

    image_size: str | None  # None for a model without sizes
    aspect_ratio: str
    pixels: tuple[int, int]

    @property
    def label(self) -> str:
        return f"{self.pixels[0]}x{self.pixels[1]}"


def map_size(spec: ModelSpec, width: int, height: int) -> SizeChoice:
    """The closest (imageSize, aspectRatio) to ``width`` x ``height``: the ratio by shape,
    then the size whose output is nearest in area (both on a log scale)."""
    target = math.log(width / height)

    def ratio_distance(ratio: str) -> float:
        w, h = (int(x) for x in ratio.split(":"))
        return abs(math.log(w / h) - target)

    ratio = min(spec.aspect_ratios, key=ratio_distance)
    sizes: tuple[str | None, ...] = spec.image_sizes or (None,)

    def area_distance(size: str | None) -> float:
        w, h = output_pixels(spec, size, ratio)
        return abs(math.log((w * h) / (width * height)))

    size = min(sizes, key=area_distance)
    return SizeChoice(size, ratio, output_pixels(spec, size, ratio))


def covering_size(spec: ModelSpec, ratio: str, width: int, height: int) -> SizeChoice | None:
    """The smallest image size whose output at ``ratio`` is at least ``width`` x ``height``;
    None when no size of the model is that big."""
    for size in spec.image_sizes or (None,):
        w, h = output_pixels(spec, size, ratio)
        if w >= width and h >= height:
            return SizeChoice(size, ratio, (w, h))
    return None
