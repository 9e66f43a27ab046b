"""What a generation's candidates hold: its images (inline or data URIs), its text, its finish
reason, and anything that could not be read. Thought parts are drafts and are skipped.

An image comes only from an image part: ``inlineData`` in a non-thought part, or a
``data:image/...;base64,`` URI in text. A link is never an image by default: on the native
protocol text is the model talking (a refusal's explanation can carry a policy URL), and
``fileData.fileUri`` points at somebody's file. Only with ``links`` (``--follow-image-links``,
for gateways that answer that way) are image links in text and ``fileData`` gathered, for the
caller to download.

Images are decoded once; gateways' fallbacks (data URIs and links in text) are only looked for
when there is no inline image, because they cost a scan of the text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.core import jsonread as jr
from pipeline.core.mime import sniff
from pipeline.core.types import ImagePart, SpooledFile
from pipeline.providers.textimages import image_urls, take_data_uris

MAX_TEXT = 20_000  # model text is an explanation, not an output

# Images decoded while the answer arrived: on disk, or in memory where the disk refused them.
Spooled = Mapping[str, SpooledFile | bytes]


@dataclass(frozen=True, slots=True)
class Reading:
    """Everything the candidates said that matters here."""

    images: tuple[ImagePart, ...] = ()
    image_urls: tuple[str, ...] = ()
    text: str | None = None
    finish_reason: str | None = None
    finish_message: str | None = None
    problem: str | None = None  # why part of it could not be read; None when all of it could


def read_candidates(
    candidates: object, *, links: bool = False, spooled: Spooled | None = None
) -> Reading:
    """Read the non-thought parts of every candidate; never raises for odd structures.

    ``links``: also gather image links (``fileData`` and URLs in text) into ``image_urls``.
    ``spooled``: images already decoded as the answer arrived (``stream``), by the text that
    stands for their base64 in the answer read.
    """
    problems: list[str] = []
    parts: list[dict[str, Any]] = []
    finish: str | None = None
    finish_message: str | None = None
    if candidates is not None and not isinstance(candidates, list):
        problems.append("candidates is not a list")
    for candidate in candidates if isinstance(candidates, list) else ():
        if not isinstance(candidate, dict):
            problems.append("a candidate is not an object")
            continue
        finish = finish or jr.enum(jr.get(candidate, "finishReason", "finish_reason"))
        finish_message = finish_message or jr.string(
            jr.get(candidate, "finishMessage", "finish_message")
        )
        content = candidate.get("content")
        found = content.get("parts") if isinstance(content, dict) else None
        if content is not None and not isinstance(content, dict):
            problems.append("candidate content is not an object")
        elif found is not None and not isinstance(found, list):
            problems.append("content parts is not a list")
        for part in found if isinstance(found, list) else ():
            if not isinstance(part, dict):
                problems.append("a part is not an object")
            elif not jr.is_thought(part.get("thought")):  # thought parts are drafts, never outputs
                parts.append(part)

    images: list[ImagePart] = []
    linked: list[str] = []
    texts: list[str] = []
    for part in parts:
        inline = jr.get(part, "inlineData", "inline_data")
        if inline is not None:
            image, problem = _inline_image(inline, spooled)
            images.extend([image] if image else [])
            problems.extend([problem] if problem else [])
        if links:
            linked.extend(u for u in [_file_url(jr.get(part, "fileData", "file_data"))] if u)
        text = part.get("text")
        if isinstance(text, str):
            texts.append(text)
        elif text is not None:
            problems.append("a text part is not a string")
    # Gateways' fallbacks, only looked for when there is no inline image (they cost a scan).
    if not images and texts:
        texts = take_data_uris(texts, images, problems)
    urls = jr.dedupe([*linked, *image_urls(texts)]) if links and not images else ()
    joined = "\n".join(texts).strip()
    return Reading(
        images=tuple(images),
        image_urls=urls,
        text=jr.cap(joined, MAX_TEXT) or None,
        finish_reason=finish,
        finish_message=jr.message(finish_message),
        problem="; ".join(jr.dedupe(problems)) or None,
    )


def _inline_image(
    inline: object, spooled: Spooled | None = None
) -> tuple[ImagePart | None, str | None]:
    """(image, None), (None, why it is unreadable), or (None, None) for non-image data."""
    if not isinstance(inline, dict):
        return None, "inlineData is not an object"
    mime = jr.string(jr.get(inline, "mimeType", "mime_type")) or ""
    mime = mime.split(";", 1)[0].strip().lower()
    if mime and not mime.startswith("image/") and mime != "application/octet-stream":
        return None, None  # audio or a document: not an output of an image run
    data = inline.get("data")
    found = spooled.get(data) if spooled and isinstance(data, str) else None
    if isinstance(found, SpooledFile):
        if not mime.startswith("image/"):
            mime = sniff(found.head) or "application/octet-stream"
        return ImagePart(b"", mime, found), None
    decoded = found if found is not None else jr.b64decode(data) if isinstance(data, str) else None
    if not decoded:
        return None, "image data is missing or not valid base64"
    if not mime.startswith("image/"):
        mime = sniff(decoded[:32]) or "application/octet-stream"  # kept: it was paid for
    return ImagePart(decoded, mime), None


def _file_url(file_data: object) -> str | None:
    if not isinstance(file_data, dict):
        return None
    uri = jr.string(jr.get(file_data, "fileUri", "file_uri"))
    mime = jr.string(jr.get(file_data, "mimeType", "mime_type")) or "image/"
    if uri and uri.lower().startswith(("https://", "http://")) and mime.startswith("image/"):
        return uri
    return None
