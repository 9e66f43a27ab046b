"""A request's ``contents`` as Google reads them: roles, parts, the one ``data`` field of each
part, inline data (base64 decoded, MIME type checked, an image's header read for its size) and
file references. What shapes the answer is kept: the user's text, the input images, the text's
length (for token counts). A body that breaks the rules raises ``schema.Invalid``.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from pipeline.emulator.errors import TROUBLESHOOTING, invalid_argument
from pipeline.emulator.schema import (
    BLOB,
    CONTENT,
    FILE_DATA,
    PART,
    PART_DATA,
    Invalid,
    bad_value,
    known_fields,
)

IMAGE_MIME_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"})
DOCUMENT_MIME_TYPES = frozenset({"application/pdf", "text/plain"})
_DECODABLE = frozenset({"image/png", "image/jpeg", "image/webp"})


@dataclass(frozen=True, slots=True)
class InputImage:
    """An input image; ``size`` is None when it cannot be known (fileData, HEIC)."""

    mime_type: str
    size: tuple[int, int] | None


def _decode_base64(data: object, path: str) -> bytes:
    if not isinstance(data, str):
        raise bad_value(path, "TYPE_BYTES", data)
    padded = data + "=" * (-len(data) % 4)
    # Proto JSON takes standard and URL-safe base64, padded or not.
    for altchars in (None, b"-_"):
        try:
            return base64.b64decode(padded, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            continue
    shown = data if len(data) <= 40 else data[:40] + "..."
    message = f"Invalid value at '{path}' (TYPE_BYTES), Base64 decoding failed for \"{shown}\""
    raise Invalid(invalid_argument(message, path))


def _check_mime(mime: object, path: str) -> str:
    if not isinstance(mime, str) or not mime:
        raise Invalid(invalid_argument(f"Missing required field {path}.", path))
    mime = mime.lower()
    if mime not in IMAGE_MIME_TYPES | DOCUMENT_MIME_TYPES:
        raise Invalid(invalid_argument(f"Unsupported MIME type: {mime} (at '{path}')", path))
    return mime


def _image_size(raw: bytes, mime: str) -> tuple[int, int] | None:
    if mime not in _DECODABLE:
        return None
    try:
        with Image.open(io.BytesIO(raw)) as picture:  # reads the header only
            return picture.size
    except (UnidentifiedImageError, OSError, ValueError):
        raise Invalid(
            invalid_argument(
                f"Unable to process input image. Please retry or report in {TROUBLESHOOTING}"
            )
        ) from None


def parse_contents(contents: object) -> tuple[list[str], list[InputImage], int]:
    if contents is None or contents == []:
        message = "* GenerateContentRequest.contents: contents is not specified\n"
        raise Invalid(invalid_argument(message, "contents"))
    if isinstance(contents, dict):
        contents = [contents]  # a single Content is tolerated by proto-JSON
    if not isinstance(contents, list):
        raise bad_value(
            "contents", "type.googleapis.com/google.ai.generativelanguage.v1beta.Content", contents
        )
    texts: list[str] = []
    images: list[InputImage] = []
    text_chars = 0
    for c, content in enumerate(contents):
        fields = known_fields(content, CONTENT, f"contents[{c}]")
        role = fields.get("role", "user")
        if role not in ("user", "model", ""):
            raise Invalid(
                invalid_argument("Please use a valid role: user, model.", f"contents[{c}].role")
            )
        parts = fields.get("parts")
        if not isinstance(parts, list) or not parts:
            message = (
                f"* GenerateContentRequest.contents[{c}].parts: contents.parts must not be empty.\n"
            )
            raise Invalid(invalid_argument(message, f"contents[{c}].parts"))
        for p, part in enumerate(parts):
            path = f"contents[{c}].parts[{p}]"
            part_fields = known_fields(part, PART, path)
            if not PART_DATA & part_fields.keys():
                message = (
                    f"* GenerateContentRequest.{path}.data: required oneof field 'data' must have "
                    "one initialized field\n"
                )
                raise Invalid(invalid_argument(message, f"{path}.data"))
            text = part_fields.get("text")
            if text is not None:
                if not isinstance(text, str):
                    raise bad_value(f"{path}.text", "TYPE_STRING", text)
                text_chars += len(text)
                if role != "model" and not part_fields.get("thought"):
                    texts.append(text)
            if "inlineData" in part_fields:
                blob = known_fields(part_fields["inlineData"], BLOB, f"{path}.inline_data")
                mime = _check_mime(blob.get("mimeType"), f"{path}.inline_data.mime_type")
                raw = _decode_base64(blob.get("data", ""), f"{path}.inline_data.data")
                if mime in IMAGE_MIME_TYPES and role != "model":
                    images.append(InputImage(mime, _image_size(raw, mime)))
            if "fileData" in part_fields:
                ref = known_fields(part_fields["fileData"], FILE_DATA, f"{path}.file_data")
                mime = _check_mime(ref.get("mimeType"), f"{path}.file_data.mime_type")
                if not isinstance(ref.get("fileUri"), str):
                    raise bad_value(f"{path}.file_data.file_uri", "TYPE_STRING", ref.get("fileUri"))
                if mime in IMAGE_MIME_TYPES and role != "model":
                    images.append(InputImage(mime, None))
    return texts, images, text_chars
