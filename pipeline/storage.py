"""Output files: atomic writes (temp file, fsync, rename), names and checksums.

A file is either wholly there under its final name or not there at all; a crash leaves at
most a ``.tmp-*`` file, which ``clean_temp_files`` removes on the next start.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from pipeline.types import ImagePart

IMAGES_DIR = "images"
_TMP_PREFIX = ".tmp-"
_EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/heic": "heic",
    "image/heif": "heif",
    "image/gif": "gif",
}


@dataclass(frozen=True, slots=True)
class StoredImage:
    """An image durable on disk."""

    rel_path: str  # relative to the output directory, with forward slashes
    sha256: str
    width: int | None  # None: the bytes did not parse as an image (kept anyway: it was paid for)
    height: int | None
    mime_type: str


def extension(mime_type: str) -> str:
    """File extension for a MIME type; unknown image types keep their subtype."""
    mime = mime_type.split(";", maxsplit=1)[0].strip().lower()
    # The server names the type: keep only letters and digits so it can never form a path.
    subtype = "".join(c for c in mime.rpartition("/")[2] if c.isascii() and c.isalnum())
    return _EXTENSIONS.get(mime) or subtype[:8] or "bin"


def output_names(row_id: str, images: tuple[ImagePart, ...]) -> list[str]:
    """``images/<id>.<ext>``, or ``images/<id>_<n>.<ext>`` when a row produced several."""
    if len(images) == 1:
        return [f"{IMAGES_DIR}/{row_id}.{extension(images[0].mime_type)}"]
    return [
        f"{IMAGES_DIR}/{row_id}_{n}.{extension(im.mime_type)}" for n, im in enumerate(images, 1)
    ]


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` so that ``path`` is either complete or absent, even across a power cut."""
    tmp = path.with_name(f"{_TMP_PREFIX}{os.getpid()}-{path.name}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def fsync_dir(path: Path) -> None:
    """Make renames inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def store_images(out_dir: Path, row_id: str, images: tuple[ImagePart, ...]) -> list[StoredImage]:
    """Write a row's images and describe them. Blocking: call it from a worker thread.

    The files' contents are fsynced; their names become durable with the directory's fsync,
    which the ledger does once per group of records, before the records themselves.
    """
    stored = []
    for rel, image in zip(output_names(row_id, images), images, strict=True):
        write_atomic(out_dir / rel, image.data)
        width, height = image_size(image.data)
        digest = hashlib.sha256(image.data).hexdigest()
        stored.append(StoredImage(rel, digest, width, height, image.mime_type))
    return stored


def image_size(data: bytes) -> tuple[int | None, int | None]:
    """Pixel size from the image header (no full decode); (None, None) if it is not an image."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Exception:  # Pillow raises many types for bad data; any of them means "not an image"
        return None, None


def clean_temp_files(out_dir: Path) -> int:
    """Remove temp files a killed run left behind; returns how many."""
    removed = 0
    for folder in (out_dir, out_dir / IMAGES_DIR):
        if folder.is_dir():
            for tmp in folder.glob(f"{_TMP_PREFIX}*"):
                tmp.unlink(missing_ok=True)
                removed += 1
    return removed
