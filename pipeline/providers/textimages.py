"""Images that gateways put where text goes: ``data:image/...;base64,`` URLs (alone, or inside
Markdown ``![image](...)``) and links to hosted images. Shared by the protocols whose answers
can carry them (the native protocol's text parts, a chat gateway's ``content``).

Pure and total: any text in, images, leftover text and problems out; no exception for any
input. Payloads are matched from a known start (``data:image/``), never searched for, so a
scan stays linear however the text is shaped.
"""

from __future__ import annotations

import re

from pipeline.core import jsonread as jr
from pipeline.core.types import ImagePart

# A base64 payload, standard or URL-safe alphabet; matched from a known start, never searched.
_B64_RUN = re.compile(r"[A-Za-z0-9+/_-]*=*")
_URL = re.compile(r"https?://[^\s<>()\[\]\"'`]+", re.IGNORECASE)
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".heic", ".heif", ".avif")
DATA_URI = "data:image/"


def decode_data_url(url: str) -> ImagePart | None:
    """The image in one ``data:image/...;base64,...`` URL; None when it is not one or its
    payload is not valid base64."""
    if not url.startswith(DATA_URI):
        return None
    comma = url.find(",", 0, 100)
    header = url[5:comma] if comma != -1 else ""
    if not header.endswith(";base64") or len(header.split()) != 1:
        return None
    decoded = jr.b64decode(url[comma + 1 :])
    return ImagePart(decoded, header.split(";", 1)[0].lower()) if decoded else None


def take_data_uris(texts: list[str], images: list[ImagePart], problems: list[str]) -> list[str]:
    """Move ``data:image/...;base64,`` payloads from ``texts`` into ``images`` (in order);
    return the rest of the text. An undecodable payload is named in ``problems``."""
    kept: list[str] = []
    for text in texts:
        pieces: list[str] = []
        pos = 0
        while (start := text.find(DATA_URI, pos)) != -1:
            comma = text.find(",", start, start + 100)
            header = text[start + 5 : comma] if comma != -1 else ""
            if not header.endswith(";base64") or len(header.split()) != 1:
                pieces.append(text[pos : start + len(DATA_URI)])
                pos = start + len(DATA_URI)
                continue
            run = _B64_RUN.match(text, comma + 1)
            end = run.end() if run else comma + 1
            decoded = jr.b64decode(text[comma + 1 : end])
            if decoded:
                images.append(ImagePart(decoded, header.split(";", 1)[0].lower()))
            else:
                problems.append("a data: URI holds invalid base64")
            # Drop the whole markdown image around it, not just the URI: "![image]()" is noise.
            opening = _link_start(text, start)
            cut_from, cut_to = (
                (opening, end + 1) if opening != -1 and text[end : end + 1] == ")" else (start, end)
            )
            pieces.append(text[pos:cut_from])
            pos = cut_to
        pieces.append(text[pos:])
        rest = "".join(pieces).strip()
        if rest:
            kept.append(rest)
    return kept


def image_urls(texts: list[str]) -> list[str]:
    """Links in text that are images: markdown ``![..](url)`` or a path with an image suffix."""
    urls: list[str] = []
    for text in texts:
        for match in _URL.finditer(text):
            url = match.group().rstrip(".,;:!?")
            path = url.split("?", 1)[0].split("#", 1)[0].lower()
            opening = _link_start(text, match.start())
            if path.endswith(_IMAGE_SUFFIXES) or (opening != -1 and text[opening] == "!"):
                urls.append(url)
    return urls


def is_web_link(url: str) -> bool:
    """An ``http(s)://`` link (what ``--follow-image-links`` may fetch)."""
    return url[:8].lower().startswith(("https://", "http://"))


def _link_start(text: str, start: int) -> int:
    """Index of the ``[`` or ``![`` opening a markdown link whose target begins at ``start``."""
    if text[start - 2 : start] != "](":
        return -1
    # Bounded look-back: alt text is short, and an unbounded rfind per URL could go quadratic.
    opening = text.rfind("[", max(0, start - 1000), start - 2)
    if opening == -1 or "]" in text[opening + 1 : start - 2] or "\n" in text[opening:start]:
        return -1
    return opening - 1 if text[opening - 1 : opening] == "!" else opening
