"""The model capability table: one place that knows what each Gemini image model accepts.

Everything that validates or builds a request asks this table, so a new model or a new image
size is a one-line change here.
"""

from __future__ import annotations

from dataclasses import dataclass

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


MODELS: dict[str, ModelSpec] = {
    spec.model_id: spec
    for spec in (
        ModelSpec("gemini-2.5-flash-image", (), "1K", _BASE_RATIOS, 14),
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


def resolve_model(name: str) -> tuple[str, ModelSpec | None]:
    """Map a user-given model name to the id to send and its spec (None: unknown to us).

    GA names are sent as written (the API accepts both); only nicknames are rewritten.
    An unknown model is not an error here: the server has the last word (a 404 stops the run).
    """
    name = name.strip().removeprefix("models/")
    canonical = ALIASES.get(name, name)
    sent = name if name.startswith("gemini-") else canonical
    return sent, MODELS.get(canonical)


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
