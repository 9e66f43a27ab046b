"""Request body -> a validated ``GenerationRequest`` or the 400 Google would answer.

Field names are accepted in camelCase and snake_case, as Google's proto-JSON parser does; an
unknown name anywhere we know the schema is rejected with Google's "Unknown name" message.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from pipeline.emulator.errors import TROUBLESHOOTING, ApiError, invalid_argument
from pipeline.emulator.models import ModelInfo
from pipeline.emulator.schema import (
    BLOB,
    CONTENT,
    FILE_DATA,
    GENERATION_CONFIG,
    IMAGE_CONFIG,
    PART,
    PART_DATA,
    TOP,
    VERTEX_IMAGE_CONFIG,
    VERTEX_TOP,
    camel,
    fingerprint,
)

MAX_PAYLOAD_BYTES = 100 * 1024 * 1024
MAX_INPUT_IMAGES = 14
IMAGE_MIME_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"})
DOCUMENT_MIME_TYPES = frozenset({"application/pdf", "text/plain"})
_DECODABLE = frozenset({"image/png", "image/jpeg", "image/webp"})

_INT_FIELDS = ("candidateCount", "maxOutputTokens", "topK", "seed")
_FLOAT_FIELDS = ("temperature", "topP", "presencePenalty", "frequencyPenalty")


@dataclass(frozen=True, slots=True)
class InputImage:
    """An input image; ``size`` is None when it cannot be known (fileData, HEIC)."""

    mime_type: str
    size: tuple[int, int] | None


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


class _Invalid(Exception):
    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


def _fields(obj: object, allowed: frozenset[str], path: str) -> dict[str, object]:
    """An object's fields by camelCase name; unknown names get Google's 400."""
    if not isinstance(obj, dict):
        where = f"'{path}'" if path else "the request"
        raise _Invalid(
            invalid_argument(f"Invalid JSON payload received. Expected an object at {where}.")
        )
    out: dict[str, object] = {}
    for key, value in obj.items():
        name = camel(key)
        if name not in allowed:
            at = f" at '{path}'" if path else ""
            message = f'Invalid JSON payload received. Unknown name "{key}"{at}: Cannot find field.'
            raise _Invalid(invalid_argument(message, path))
        out[name] = value
    return out


def _bad_value(path: str, proto_type: str, value: object) -> _Invalid:
    shown = value if isinstance(value, str) else json.dumps(value)
    return _Invalid(invalid_argument(f"Invalid value at '{path}' ({proto_type}), {shown}", path))


def _decode_base64(data: object, path: str) -> bytes:
    if not isinstance(data, str):
        raise _bad_value(path, "TYPE_BYTES", data)
    padded = data + "=" * (-len(data) % 4)
    # Proto JSON takes standard and URL-safe base64, padded or not.
    for altchars in (None, b"-_"):
        try:
            return base64.b64decode(padded, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            continue
    shown = data if len(data) <= 40 else data[:40] + "..."
    message = f"Invalid value at '{path}' (TYPE_BYTES), Base64 decoding failed for \"{shown}\""
    raise _Invalid(invalid_argument(message, path))


def _check_mime(mime: object, path: str) -> str:
    if not isinstance(mime, str) or not mime:
        raise _Invalid(invalid_argument(f"Missing required field {path}.", path))
    mime = mime.lower()
    if mime not in IMAGE_MIME_TYPES | DOCUMENT_MIME_TYPES:
        raise _Invalid(invalid_argument(f"Unsupported MIME type: {mime} (at '{path}')", path))
    return mime


def _image_size(raw: bytes, mime: str) -> tuple[int, int] | None:
    if mime not in _DECODABLE:
        return None
    try:
        with Image.open(io.BytesIO(raw)) as picture:  # reads the header only
            return picture.size
    except (UnidentifiedImageError, OSError, ValueError):
        raise _Invalid(
            invalid_argument(
                f"Unable to process input image. Please retry or report in {TROUBLESHOOTING}"
            )
        ) from None


def _parse_contents(contents: object) -> tuple[list[str], list[InputImage], int]:
    if contents is None or contents == []:
        message = "* GenerateContentRequest.contents: contents is not specified\n"
        raise _Invalid(invalid_argument(message, "contents"))
    if isinstance(contents, dict):
        contents = [contents]  # a single Content is tolerated by proto-JSON
    if not isinstance(contents, list):
        raise _bad_value(
            "contents", "type.googleapis.com/google.ai.generativelanguage.v1beta.Content", contents
        )
    texts: list[str] = []
    images: list[InputImage] = []
    text_chars = 0
    for c, content in enumerate(contents):
        fields = _fields(content, CONTENT, f"contents[{c}]")
        role = fields.get("role", "user")
        if role not in ("user", "model", ""):
            raise _Invalid(
                invalid_argument("Please use a valid role: user, model.", f"contents[{c}].role")
            )
        parts = fields.get("parts")
        if not isinstance(parts, list) or not parts:
            message = (
                f"* GenerateContentRequest.contents[{c}].parts: contents.parts must not be empty.\n"
            )
            raise _Invalid(invalid_argument(message, f"contents[{c}].parts"))
        for p, part in enumerate(parts):
            path = f"contents[{c}].parts[{p}]"
            part_fields = _fields(part, PART, path)
            if not PART_DATA & part_fields.keys():
                message = (
                    f"* GenerateContentRequest.{path}.data: required oneof field 'data' must have "
                    "one initialized field\n"
                )
                raise _Invalid(invalid_argument(message, f"{path}.data"))
            text = part_fields.get("text")
            if text is not None:
                if not isinstance(text, str):
                    raise _bad_value(f"{path}.text", "TYPE_STRING", text)
                text_chars += len(text)
                if role != "model" and not part_fields.get("thought"):
                    texts.append(text)
            if "inlineData" in part_fields:
                blob = _fields(part_fields["inlineData"], BLOB, f"{path}.inline_data")
                mime = _check_mime(blob.get("mimeType"), f"{path}.inline_data.mime_type")
                raw = _decode_base64(blob.get("data", ""), f"{path}.inline_data.data")
                if mime in IMAGE_MIME_TYPES and role != "model":
                    images.append(InputImage(mime, _image_size(raw, mime)))
            if "fileData" in part_fields:
                ref = _fields(part_fields["fileData"], FILE_DATA, f"{path}.file_data")
                mime = _check_mime(ref.get("mimeType"), f"{path}.file_data.mime_type")
                if not isinstance(ref.get("fileUri"), str):
                    raise _bad_value(
                        f"{path}.file_data.file_uri", "TYPE_STRING", ref.get("fileUri")
                    )
                if mime in IMAGE_MIME_TYPES and role != "model":
                    images.append(InputImage(mime, None))
    return texts, images, text_chars


def _check_numbers(config: Mapping[str, object]) -> None:
    for name in _INT_FIELDS:
        value = config.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise _bad_value(f"generation_config.{_snake(name)}", "TYPE_INT32", value)
    for name in _FLOAT_FIELDS:
        value = config.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise _bad_value(f"generation_config.{_snake(name)}", "TYPE_FLOAT", value)


def _modalities(config: Mapping[str, object]) -> bool:
    """Check responseModalities; True when a text part was asked for."""
    value = config.get("responseModalities")
    if value is None:
        return False
    if not isinstance(value, list):
        raise _bad_value("generation_config.response_modalities", "TYPE_ENUM", value)
    wanted: set[str] = set()
    for i, item in enumerate(value):
        name = item.upper() if isinstance(item, str) else None
        if name not in ("TEXT", "IMAGE", "AUDIO", "MODALITY_UNSPECIFIED"):
            proto = (
                "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerationConfig.Modality"
            )
            raise _bad_value(f"generation_config.response_modalities[{i}]", proto, item)
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
        raise _Invalid(invalid_argument(message, "generation_config.response_modalities"))
    return "TEXT" in wanted


def _image_config(
    model: ModelInfo, model_id: str, raw: object, vertex: bool
) -> tuple[str | None, str | None, str | None]:
    """(imageSize, aspectRatio, outputMimeType) as sent, each checked against the model."""
    if raw is None:
        return None, None, None
    path = "generation_config.image_config"
    config = _fields(raw, VERTEX_IMAGE_CONFIG if vertex else IMAGE_CONFIG, path)
    size = config.get("imageSize")
    if size is not None:
        if not isinstance(size, str):
            raise _bad_value(f"{path}.image_size", "TYPE_STRING", size)
        if not model.sizes:
            message = (
                f"generationConfig.imageConfig.imageSize is not supported by models/{model_id}; "
                "omit it (this model makes 1K images only)."
            )
            raise _Invalid(invalid_argument(message, f"{path}.image_size"))
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
            raise _Invalid(invalid_argument(message, f"{path}.image_size"))
    ratio = config.get("aspectRatio")
    if ratio is not None:
        if not isinstance(ratio, str):
            raise _bad_value(f"{path}.aspect_ratio", "TYPE_STRING", ratio)
        if ratio not in model.ratios:
            message = (
                f"Unsupported generationConfig.imageConfig.aspectRatio {ratio!r} for "
                f"models/{model_id}: supported values are {', '.join(model.ratios)}."
            )
            raise _Invalid(invalid_argument(message, f"{path}.aspect_ratio"))
    mime = config.get("outputMimeType")
    if mime is not None and mime not in ("image/png", "image/jpeg"):
        raise _bad_value(f"{path}.output_mime_type", "TYPE_STRING", mime)
    return size, ratio, mime if isinstance(mime, str) else None


def _validate(model_id: str, model: ModelInfo, body: bytes, vertex: bool) -> GenerationRequest:
    if len(body) > MAX_PAYLOAD_BYTES:
        message = f"Request payload size exceeds the limit: {MAX_PAYLOAD_BYTES} bytes."
        raise _Invalid(invalid_argument(message))
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _Invalid(
            invalid_argument("Invalid JSON payload received. Unexpected token.")
        ) from None
    top = _fields(document, VERTEX_TOP if vertex else TOP, "")
    config = _fields(top.get("generationConfig") or {}, GENERATION_CONFIG, "generation_config")
    _check_numbers(config)
    texts, images, text_chars = _parse_contents(top.get("contents"))
    system = top.get("systemInstruction")
    if system is not None:
        system_fields = _fields(system, CONTENT, "system_instruction")
        system_parts = system_fields.get("parts")
        for part in system_parts if isinstance(system_parts, list) else []:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                text_chars += len(part["text"])
    if len(images) > MAX_INPUT_IMAGES:
        message = (
            f"Too many input images: {len(images)} images in contents, the maximum for "
            f"models/{model_id} is {MAX_INPUT_IMAGES}."
        )
        raise _Invalid(invalid_argument(message, "contents"))
    candidates = config.get("candidateCount")
    if isinstance(candidates, int) and candidates > 1:
        message = (
            f"Multiple candidates is not enabled for models/{model_id} "
            f"(generationConfig.candidateCount = {candidates})."
        )
        raise _Invalid(invalid_argument(message, "generation_config.candidate_count"))
    if isinstance(candidates, int) and candidates < 0:
        raise _bad_value("generation_config.candidate_count", "TYPE_INT32", candidates)
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
    except _Invalid as invalid:
        return invalid.error
