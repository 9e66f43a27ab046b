"""Image formats: told from their first bytes (never from a file name or a claimed type), and
the one table of MIME types and the file extensions outputs are saved under."""

from __future__ import annotations

# What Gemini takes as input images.
INPUT_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"})

# An output's extension by its MIME type; other image types keep their (sanitised) subtype.
EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/heic": "heic",
    "image/heif": "heif",
    "image/gif": "gif",
}
_TYPES = {ext: mime for mime, ext in EXTENSIONS.items()}
MAX_EXTENSION = 8  # characters: output names leave room for this much after the dot

_HEIC_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs"}
_HEIF_BRANDS = {b"mif1", b"msf1"}


def sniff(head: bytes) -> str | None:
    """The image MIME type of bytes starting with ``head`` (32 bytes suffice), or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[4:8] == b"ftyp":
        if head[8:12] in _HEIC_BRANDS:
            return "image/heic"
        if head[8:12] in _HEIF_BRANDS:
            return "image/heif"
    return None


def extension(mime_type: str) -> str:
    """File extension for a MIME type; unknown image types keep their subtype."""
    mime = mime_type.split(";", maxsplit=1)[0].strip().lower()
    if known := EXTENSIONS.get(mime):
        return known
    # The server names the type: keep only letters and digits so it can never form a path.
    subtype = "".join(c for c in mime.rpartition("/")[2] if c.isascii() and c.isalnum())
    return subtype[:MAX_EXTENSION] or "bin"


def type_of_extension(ext: str) -> str:
    """The MIME type an output saved with extension ``ext`` was received as."""
    ext = ext.lower()
    return _TYPES.get(ext, f"image/{ext}")
