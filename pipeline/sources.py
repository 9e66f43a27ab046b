"""Source (reference) images: content sniffing, size limits, and a bounded cache of encodings.

The same reference photo is often used by thousands of rows; it is read and base64-encoded once.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass

MAX_IMAGE_BYTES = 7 * 1024 * 1024  # per inline image (Vertex's documented rule)
MAX_REQUEST_INLINE_BYTES = 100 * 1024 * 1024  # base64 inline total per request (Jan 2026)

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs"}
_MIF_BRANDS = {b"mif1", b"msf1"}


def sniff_mime(head: bytes) -> str | None:
    """The MIME type of an image from its first bytes (never from its file name); None if
    it is not one of the formats Gemini accepts."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _HEIF_BRANDS:
            return "image/heic"
        if brand in _MIF_BRANDS:
            return "image/heif"
    return None


def describe_unsupported(head: bytes) -> str:
    """A short human name for a file that is not an accepted image."""
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "a GIF (Gemini takes PNG, JPEG, WebP, HEIC or HEIF: convert it)"
    if not head:
        return "an empty file"
    return "not a PNG, JPEG, WebP, HEIC or HEIF image"


@dataclass(frozen=True, slots=True)
class SourceImage:
    """One source image, ready to inline."""

    mime_type: str
    b64: str  # base64 text, as sent
    sha256: str  # of the raw bytes
    size: int  # raw bytes


class SourceImageError(Exception):
    """A source image that cannot be sent; the message names the file and the fix."""


def check_source(path: str) -> str | None:
    """Why ``path`` cannot be used as a source image, or None. Reads only the first bytes."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(32)
    except IsADirectoryError:
        return f"{path} is a directory, not an image"
    except FileNotFoundError:
        return f"{path} does not exist"
    except OSError as e:
        return f"{path} cannot be read ({e.strerror})"
    if sniff_mime(head) is None:
        return f"{path} is {describe_unsupported(head)}"
    if size > MAX_IMAGE_BYTES:
        return (
            f"{path} is {size / 1e6:.1f} MB; the limit per image is "
            f"{MAX_IMAGE_BYTES / 1e6:.1f} MB: downscale or re-encode it"
        )
    return None


class SourceCache:
    """A thread-safe LRU of encoded source images, keyed by path and file identity.

    Keyed by (path, size, mtime) so a replaced reference photo is read again.
    """

    def __init__(self, max_bytes: int = 256 * 1024 * 1024, max_digests: int = 100_000) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._items: OrderedDict[tuple[str, int, int], SourceImage] = OrderedDict()
        self._digests: OrderedDict[tuple[str, int, int], str] = OrderedDict()
        self._max_digests = max_digests
        self._lock = threading.Lock()

    def digest(self, path: str) -> str:
        """The sha256 of a source file's bytes, read once per file version.

        Used to fingerprint rows that are already done without encoding their images.
        """
        try:
            st = os.stat(path)
        except OSError:
            return "missing"
        key = (path, st.st_size, st.st_mtime_ns)
        with self._lock:
            if (hit := self._digests.get(key)) is not None:
                return hit
        h = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
        except OSError:
            return "unreadable"
        with self._lock:
            self._digests[key] = h.hexdigest()
            if len(self._digests) > self._max_digests:
                self._digests.popitem(last=False)
        return h.hexdigest()

    def load(self, path: str) -> SourceImage:
        """The encoded image at ``path``; raises SourceImageError with a user-facing reason."""
        try:
            st = os.stat(path)
        except OSError as e:
            raise SourceImageError(f"{path} cannot be read ({e.strerror})") from None
        key = (path, st.st_size, st.st_mtime_ns)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        image = self._read(path)
        with self._lock:
            self._items[key] = image
            self._bytes += len(image.b64)
            while self._bytes > self._max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old.b64)
        return image

    @staticmethod
    def _read(path: str) -> SourceImage:
        reason = check_source(path)
        if reason is not None:
            raise SourceImageError(reason)
        with open(path, "rb") as f:
            data = f.read()
        mime = sniff_mime(data[:32])
        assert mime is not None  # check_source passed
        return SourceImage(
            mime_type=mime,
            b64=base64.b64encode(data).decode("ascii"),
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
        )
