"""Whether bytes really are an image: decoded, not just sniffed.

Used twice: a source photo that is corrupt or truncated is an invalid row (a paid request
would only get a 400 or a wrong picture), and an image fetched from a link (opt-in) is kept only
if it decodes. Sniffing the first bytes says what a file claims to be; only a decode says that
the rest of it is there.

Kept cheap, because a run checks each distinct source photo once before its first request:
a PNG is verified chunk by chunk (CRCs, no inflating), a JPEG decoded at 1/8 scale (the whole
entropy-coded stream is still read, so truncation shows), others decoded in full. HEIC/HEIF
need pillow-heif; without it they are taken on their signature. Pillow (and the HEIF plugin)
load on the first check, not at import: a run imports this module before its first request,
and most runs only check an image when an answer arrives.
"""

from __future__ import annotations

import functools
import io
import re
import warnings
from typing import BinaryIO

from pipeline.core.mime import sniff

_HEIF = ("image/heic", "image/heif")


@functools.cache
def _heif_decoder() -> bool:
    """Register pillow-heif's opener with Pillow (once); whether HEIC/HEIF decode here."""
    try:  # HEIC/HEIF decoding, an optional extra of Pillow
        import pillow_heif
    except ImportError:  # pragma: no cover - declared, but a trimmed install may lack it
        return False
    pillow_heif.register_heif_opener()
    return True


def decode_problem(source: bytes | BinaryIO) -> str | None:
    """Why ``source`` (bytes, or a binary file at its start) does not decode as an image, in a
    few words; None when it does."""
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    head = stream.read(32)
    stream.seek(0)
    heif = _heif_decoder()  # first, so Pillow knows HEIF before it opens anything
    if sniff(head) in _HEIF and not heif:
        return None  # cannot check here; the server has the last word
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a decompression-bomb warning is not a defect
            with Image.open(stream) as image:
                if image.format == "PNG":
                    image.verify()
                    return None
                if image.format == "JPEG":
                    image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
                image.load()
    except Exception as e:  # Pillow raises many types for bad data; all mean "does not decode"
        return _short(e)
    return None


def decoded_mime(data: bytes) -> str | None:
    """The MIME type of ``data`` if it is an image that decodes whole, else None."""
    if decode_problem(data) is not None:
        return None
    mime = sniff(data[:32])
    if mime is not None:
        return mime
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return Image.MIME.get(image.format or "")
    except Exception:  # decoded above; a format Pillow knows but has no MIME type for
        return None


def _short(error: Exception) -> str:
    from PIL import UnidentifiedImageError

    if isinstance(error, UnidentifiedImageError):
        return "no image data Pillow can read"
    text = _OBJECT.sub("", " ".join(str(error).split()))[:120].strip()
    return text or type(error).__name__


_OBJECT = re.compile(r"<[^<>]*>")  # Pillow names the stream object: noise to a user
