"""Request body -> a validated ``GenerationRequest`` or the 400 Google would answer.

Field names are accepted in camelCase and snake_case, as Google's proto-JSON parser does; an
unknown name anywhere we know the schema is rejected with Google's "Unknown name" message.
The contents (text parts, input images) are read by ``contents``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.emulator.contents import InputImage, parse_contents
from pipeline.emulator.errors import ApiError, invalid_argument
from pipeline.emulator.models import ModelInfo
from pipeline.emulator.schema import (
    CONTENT,
    GENERATION_CONFIG,
    IMAGE_CONFIG,
    TOP,
    VERTEX_IMAGE_CONFIG,
    VERTEX_TOP,
    Invalid,
    bad_value,
    fingerprint,
    known_fields,
    snake,
)

MAX_PAYLOAD_BYTES = 100 * 1024 * 1024
MAX_INPUT_IMAGES = 14

_INT_FIELDS = ("candidateCount", "maxOutputTokens", "topK", "seed")
_FLOAT_FIELDS = ("temperature", "topP", "presencePenalty", "frequencyPenalty")


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """A request the model would accept, reduced to what shapes the answer."""

    model_id: str
    model: ModelInfo
    fingerprint: bytes
    prompt: str  # the user's text parts, joined
    text_chars: int  # all text, including the system instruction (for token counts)
    images: tuple[InputImage, ...]
    image_size: str
    aspect_ratio: str
    want_text: bool
    mime_type: str
    service_tier: object = None  # the body's serviceTier as sent (tiers.py reads it)


def _check_numbers(config: Mapping[str, object]) -> None:
    for name in _INT_FIELDS:
        value = config.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise bad_value(f"generation_config.{snake(name)}", "TYPE_INT32", value)
    for name in _FLOAT_FIELDS:
        value = config.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise bad_value(f"generation_config.{snake(name)}", "TYPE_FLOAT", value)


def _modalities(config: Mapping[str, object]) -> bool:
    """Check responseModalities; True when a text part was asked for."""
    value = config.get("responseModalities")
    if value is None:
        return False
    if not isinstance(value, list):
        raise bad_value("generation_config.response_modalities", "TYPE_ENUM", value)
    wanted: set[str] = set()
    for i, item in enumerate(value):
        name = item.upper() if isinstance(item, str) else None
        if name not in ("TEXT", "IMAGE", "AUDIO", "MODALITY_UNSPECIFIED"):
            proto = (
                "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerationConfig.Modality"
            )
            raise bad_value(f"generation_config.response_modalities[{i}]", proto, item)
        wanted.add(name)
    unsupported = wanted - {"TEXT", "IMAGE", "MODALITY_UNSPECIFIED"}
    if "IMAGE" not in wanted:
        unsupported |= wanted
    if unsupported:
        names = ", ".join(sorted(m.lower() for m in unsupported))
        message = (
            f"Model does not support the requested response modalities: {names} "
            "(generationConfig.responseModalities)"
        )
        raise Invalid(invalid_argument(message, "generation_config.response_modalities"))
    return "TEXT" in wanted


def _image_config(
    model: ModelInfo, model_id: str, raw: object, vertex: bool
) -> tuple[str | None, str | None, str | None]:
    """(imageSize, aspectRatio, outputMimeType) as sent, each checked against the model."""
    if raw is None:
        return None, None, None
    path = "generation_config.image_config"
    config = known_fields(raw, VERTEX_IMAGE_CONFIG if vertex else IMAGE_CONFIG, path)
    size = config.get("imageSize")
    if size is not None:
        if not isinstance(size, str):
            raise bad_value(f"{path}.image_size", "TYPE_STRING", size)
        if not model.sizes:
            message = (
                f"generationConfig.imageConfig.imageSize is not supported by models/{model_id}; "
                "omit it (this model makes 1K images only)."
            )
            raise Invalid(invalid_argument(message, f"{path}.image_size"))
        if size not in model.sizes:
            if size == "512":
                hint = " 512 is only available on gemini-3.1-flash-image."
            elif size.upper() in model.sizes:
                hint = f" Sizes are case-sensitive: use {size.upper()!r}."
            else:
                hint = ""
            allowed = ", ".join(model.sizes)
            message = (
                f"Invalid generationConfig.imageConfig.imageSize {size!r} for models/{model_id}: "
                f"supported values are {allowed}.{hint}"
            )
            raise Invalid(invalid_argument(message, f"{path}.image_size"))
    ratio = config.get("aspectRatio")
    if ratio is not None:
        if not isinstance(ratio, str):
            raise bad_value(f"{path}.aspect_ratio", "TYPE_STRING", ratio)
        if ratio not in model.ratios:
            message = (
                f"Unsupported generationConfig.imageConfig.aspectRatio {ratio!r} for "
                f"models/{model_id}: supported values are {', '.join(model.ratios)}."
            )
            raise Invalid(invalid_argument(message, f"{path}.aspect_ratio"))
    mime = config.get("outputMimeType")
    if mime is not None and mime not in ("image/png", "image/jpeg"):
        raise bad_value(f"{path}.output_mime_type", "TYPE_STRING", mime)
    return size, ratio, mime if isinstance(mime, str) else None


def _validate(model_id: str, model: ModelInfo, body: bytes, vertex: bool) -> GenerationRequest:
    if len(body) > MAX_PAYLOAD_BYTES:
        message = f"Request payload size exceeds the limit: {MAX_PAYLOAD_BYTES} bytes."
        raise Invalid(invalid_argument(message))
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Invalid(
            invalid_argument("Invalid JSON payload received. Unexpected token.")
        ) from None
    top = known_fields(document, VERTEX_TOP if vertex else TOP, "")
    config = known_fields(top.get("generationConfig") or {}, GENERATION_CONFIG, "generation_config")
    _check_numbers(config)
    texts, images, text_chars = parse_contents(top.get("contents"))
    system = top.get("systemInstruction")
    if system is not None:
        system_fields = known_fields(system, CONTENT, "system_instruction")
        system_parts = system_fields.get("parts")
        for part in system_parts if isinstance(system_parts, list) else []:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                text_chars += len(part["text"])
    if len(images) > MAX_INPUT_IMAGES:
        message = (
            f"Too many input images: {len(images)} images in contents, the maximum for "
            f"models/{model_id} is {MAX_INPUT_IMAGES}."
        )
        raise Invalid(invalid_argument(message, "contents"))
    candidates = config.get("candidateCount")
    if isinstance(candidates, int) and candidates > 1:
        message = (
            f"Multiple candidates is not enabled for models/{model_id} "
            f"(generationConfig.candidateCount = {candidates})."
        )
        raise Invalid(invalid_argument(message, "generation_config.candidate_count"))
    if isinstance(candidates, int) and candidates < 0:
        raise bad_value("generation_config.candidate_count", "TYPE_INT32", candidates)
    want_text = _modalities(config)
    size, ratio, mime = _image_config(model, model_id, config.get("imageConfig"), vertex)
    if ratio is None:
        last = images[-1].size if images else None
        ratio = model.nearest_ratio(*last) if last else "1:1"
    return GenerationRequest(
        model_id=model_id,
        model=model,
        fingerprint=fingerprint(model_id, document),
        prompt="\n".join(texts),
        text_chars=text_chars,
        images=tuple(images),
        image_size=size or model.default_size,
        aspect_ratio=ratio,
        want_text=want_text,
        mime_type=mime or model.mime_type,
        service_tier=top.get("serviceTier"),
    )


def validate(
    model_id: str, model: ModelInfo, body: bytes, *, vertex: bool = False
) -> GenerationRequest | ApiError:
    """Check a generateContent body the way Google does; the error is a value, not raised."""
    try:
        return _validate(model_id, model, body, vertex)
    except Invalid as invalid:
        return invalid.error
