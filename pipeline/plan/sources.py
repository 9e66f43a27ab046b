"""Source (reference) images: content sniffing, size limits, and a bounded cache of encodings.

The same reference photo is often used by thousands of rows; it is read and base64-encoded once.
Only regular files are read (a FIFO would block ``open`` for ever, a device never ends), and
never more than the size limit allows.

Pillow and structlog are imported by ``fit_image``, the one place that needs them: the CLI
reads this module's limits for its help text, and a run without source images never fits one.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import os
import stat
import threading
from collections import OrderedDict
from dataclasses import dataclass

from pipeline.core.imagecheck import decode_problem
from pipeline.core.mime import INPUT_TYPES, sniff

# One number each, in MiB, for help, README and messages alike.
MAX_IMAGE_MIB = 7  # per inline image (Vertex's documented rule)
MAX_REQUEST_INLINE_MIB = 100  # base64 inline total per request (Jan 2026)
MAX_IMAGE_BYTES = MAX_IMAGE_MIB * 2**20
MAX_REQUEST_INLINE_BYTES = MAX_REQUEST_INLINE_MIB * 2**20
MAX_FIT_SOURCE_MIB = 100  # the most --fit-images reads of one photo (a 100 MP TIFF-sized PNG)
MAX_FIT_SOURCE_BYTES = MAX_FIT_SOURCE_MIB * 2**20


def inline_bytes(file_size: int) -> int:
    """What a local image of ``file_size`` bytes adds to a request: its base64 text (a larger
    image is sent only after --fit-images brought it down to the per-image limit)."""
    return 4 * math.ceil(min(file_size, MAX_IMAGE_BYTES) / 3)


def sniff_mime(head: bytes) -> str | None:
    """The MIME type of an image from its first bytes (never from its file name); None if
    it is not one of the formats Gemini accepts."""
    mime = sniff(head)
    return mime if mime in INPUT_TYPES else None


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


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What the first bytes and the size of a source file say about it."""

    size: int
    mime_type: str | None  # None: not an accepted image format
    problem: str | None  # why it cannot be sent at all (missing, unreadable, not an image)


class NotRegularFile(OSError):
    """A path that names a FIFO, a device, a directory or a socket: never read."""


def open_regular(path: str) -> io.BufferedReader:
    """``path`` opened for reading, if it is a regular file (after symlinks); else
    ``NotRegularFile``. Opened without blocking, so a FIFO with no writer cannot hang us."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        mode = os.fstat(fd).st_mode  # of what was opened: no race with a swapped path
        if not stat.S_ISREG(mode):
            raise NotRegularFile(f"{path} is {_kind(mode)}, not an image file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bounded(f: io.BufferedReader, path: str, limit: int) -> bytes:
    """All of ``f``, or SourceImageError if it holds more than ``limit`` bytes."""
    data = f.read(limit + 1)
    if len(data) > limit:
        raise SourceImageError(f"{path} is over {limit / 2**20:.0f} MiB: too big to read")
    return data


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def inspect_source(path: str, *, decode: bool = False) -> SourceInfo:
    """Look at a source file: a regular file, an accepted format by its first bytes, and with
    ``decode`` one that decodes whole (corrupt or truncated files fail here, not at the API)."""
    try:
        with open_regular(path) as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(32)
            mime = sniff_mime(head)
            problem = None
            # Only what is sent as it is: an oversized photo is refused, or re-encoded by
            # --fit-images (which decodes it then, still before any request).
            if decode and mime is not None and size <= MAX_IMAGE_BYTES:
                f.seek(0)
                problem = decode_problem(f)
    except NotRegularFile as e:
        return SourceInfo(0, None, str(e))
    except FileNotFoundError:
        return SourceInfo(0, None, f"{path} does not exist")
    except OSError as e:
        return SourceInfo(0, None, f"{path} cannot be read ({e.strerror})")
    if mime is None:
        return SourceInfo(size, None, f"{path} is {describe_unsupported(head)}")
    if problem is not None:
        return SourceInfo(
            size, mime, f"{path} does not decode as an image ({problem}): re-export or replace it"
        )
    return SourceInfo(size, mime, None)


def too_big(path: str, size: int) -> str:
    return (
        f"{path} is {size / 2**20:.1f} MiB; the limit per image is {MAX_IMAGE_MIB} MiB: "
        "downscale or re-encode it, or pass --fit-images"
    )


def fit_image(path: str, data: bytes, limit: int = MAX_IMAGE_BYTES) -> tuple[bytes, str]:
    """Downscale and re-encode an image until it is at most ``limit`` bytes; says by how much.

    JPEG for photos (PNG when the image has transparency, which JPEG would lose).
    """
    import structlog
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as opened:
            image = opened.copy()
    except Exception as e:  # Pillow raises many types; HEIC has no decoder here
        raise SourceImageError(f"{path} is too big and cannot be re-encoded ({e})") from None
    original = image.size
    alpha = image.mode in ("RGBA", "LA") or "transparency" in image.info
    fmt, mime = ("PNG", "image/png") if alpha else ("JPEG", "image/jpeg")
    if not alpha:
        image = image.convert("RGB")
    scale = 1.0
    while True:
        out = io.BytesIO()
        size = (max(1, round(original[0] * scale)), max(1, round(original[1] * scale)))
        resized = image if scale == 1.0 else image.resize(size, Image.Resampling.LANCZOS)
        resized.save(out, fmt, **({"quality": 90} if fmt == "JPEG" else {"optimize": True}))
        if out.tell() <= limit:
            structlog.get_logger("nanobatch").warning(
                "source.fitted",
                path=path,
                before_mb=round(len(data) / 1e6, 1),
                after_mb=round(out.tell() / 1e6, 1),
                before=f"{original[0]}x{original[1]}",
                after=f"{size[0]}x{size[1]}",
                format=fmt,
            )
            return out.getvalue(), mime
        scale *= max(0.5, min(0.9, (limit / out.tell()) ** 0.5))


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
            with open_regular(path) as f:
                for _ in range(MAX_FIT_SOURCE_BYTES >> 20):
                    if not (chunk := f.read(1 << 20)):
                        break
                    h.update(chunk)
        except OSError:
            return "unreadable"
        with self._lock:
            self._digests[key] = h.hexdigest()
            if len(self._digests) > self._max_digests:
                self._digests.popitem(last=False)
        return h.hexdigest()

    def load(self, path: str, *, fit: bool = False) -> SourceImage:
        """The encoded image at ``path``; raises SourceImageError with a user-facing reason.

        With ``fit``, an image over the per-image limit is downscaled to fit (``sha256`` stays
        the original file's, so the row's fingerprint does not depend on the encoder).
        """
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
        image = self._read(path, fit)
        with self._lock:
            self._items[key] = image
            self._bytes += len(image.b64)
            while self._bytes > self._max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old.b64)
        return image

    @staticmethod
    def _read(path: str, fit: bool) -> SourceImage:
        info = inspect_source(path)
        if info.problem is not None:
            raise SourceImageError(info.problem)
        if info.size > MAX_IMAGE_BYTES and not fit:
            raise SourceImageError(too_big(path, info.size))
        try:
            with open_regular(path) as f:
                data = read_bounded(f, path, MAX_FIT_SOURCE_BYTES if fit else MAX_IMAGE_BYTES)
        except OSError as e:
            raise SourceImageError(
                str(e) if isinstance(e, NotRegularFile) else f"{path} cannot be read ({e.strerror})"
            ) from None
        digest = hashlib.sha256(data).hexdigest()
        mime = sniff_mime(data[:32])
        if mime is None:  # replaced since inspect_source looked
            raise SourceImageError(f"{path} is {describe_unsupported(data[:32])}")
        if len(data) > MAX_IMAGE_BYTES:
            data, mime = fit_image(path, data)
        return SourceImage(
            mime_type=mime,
            b64=base64.b64encode(data).decode("ascii"),
            sha256=digest,
            size=len(data),
        )
