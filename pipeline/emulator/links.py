"""Hosted images for the chat route's ``link`` shape: the answer names an emulator URL
(``/_emulator/images/{id}.{ext}``) instead of carrying the image, as some gateways do. Images are
kept (as their base64 pieces, shared with the image cache) up to a byte budget, oldest dropped
first; a link to a dropped image is a 404, as an expired CDN link would be.
"""

from __future__ import annotations

import base64
import secrets
from collections import OrderedDict

from pipeline.emulator.images import Encoded

PREFIX = "/_emulator/images/"
_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg"}


class LinkStore:
    def __init__(self, budget_bytes: int) -> None:
        self._budget = budget_bytes
        self._used = 0
        self._images: OrderedDict[str, tuple[Encoded, str]] = OrderedDict()

    def put(self, image: Encoded, mime: str) -> str:
        """Keep an image; returns its path under the emulator's base URL."""
        name = f"{secrets.token_urlsafe(16)}.{_EXTENSIONS.get(mime, 'bin')}"
        self._images[name] = (image, mime)
        self._used += sum(len(piece) for piece in image)
        while self._used > self._budget and len(self._images) > 1:
            _, (dropped, _) = self._images.popitem(last=False)
            self._used -= sum(len(piece) for piece in dropped)
        return PREFIX + name

    def get(self, path: str) -> tuple[bytes, str] | None:
        """The image's bytes and MIME type, or None when unknown or dropped."""
        found = self._images.get(path.removeprefix(PREFIX))
        if found is None:
            return None
        image, mime = found
        return base64.b64decode(b"".join(image)), mime
