"""Thumbnails for the contact sheet: small JPEGs under ``DIR/thumbs/``, made once and reused.

A thumbnail is a cache, not a result: it is remade when missing or older than its image, written
with a rename so a reader never sees half a file, and never fsynced (losing one costs a redraw).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

THUMBS_DIR = "thumbs"
THUMB_PX = 256  # long side; tiles show them at about 230 px, and 10,000 of them stay ~100 MB
_QUALITY = 80
_RESIZABLE = ("RGB", "RGBA", "L", "LA")  # modes Pillow resizes with a proper filter


def thumbnail_path(image: str) -> str:
    """Where the thumbnail of ``image`` (relative to DIR) lives, relative to DIR.

    Named after the image's path under ``images/``, not the row id: the stem is already a safe
    file name, a row with several images keeps them apart, and so do two sub-folders
    (``--name-template "{category}/{sku}"``) that hold files of the same name.
    """
    inside = image.split("/", 1)[-1]
    return f"{THUMBS_DIR}/{inside.rsplit('.', 1)[0]}.jpg"


def make_thumbnail(out_dir: Path, image: str) -> str | None:
    """The thumbnail of ``image``, made if missing or stale; None if the image cannot be read."""
    source = out_dir / image
    rel = thumbnail_path(image)
    target = out_dir / rel
    # A short temp name: the image's own name may already be near the file system's limit.
    tmp = target.with_name(f".tmp-{os.getpid()}-{threading.get_ident()}.jpg")
    try:
        if target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
            return rel
        with Image.open(source) as im:
            # JPEG decodes straight at 1/2, 1/4 or 1/8 scale: the bulk of the saving at 4K.
            im.draft("RGB", (THUMB_PX, THUMB_PX))
            # Palette images (what the emulator and many encoders write) resize only by
            # nearest neighbour: make them RGB first, with alpha only where there is any.
            full = im if im.mode in _RESIZABLE else im.convert("RGBA" if _alpha(im) else "RGB")
            # Box-average by the whole integer factor first (reducing_gap=1): as smooth at this
            # size, and half the time of the default. Shrink before flattening: 16x fewer pixels.
            full.thumbnail((THUMB_PX, THUMB_PX), reducing_gap=1.0)
            target.parent.mkdir(parents=True, exist_ok=True)
            _flatten(full).save(tmp, "JPEG", quality=_QUALITY)
        os.replace(tmp, target)
    except (OSError, ValueError, Image.DecompressionBombError):
        # Missing, truncated or not an image at all: the tile says so instead of a picture.
        tmp.unlink(missing_ok=True)
        return None
    return rel


def _alpha(im: Image.Image) -> bool:
    return "transparency" in im.info or im.mode.endswith("A")  # RGBA, LA, PA


def _flatten(im: Image.Image) -> Image.Image:
    """RGB for JPEG, transparent areas on white (a plain convert would make them black)."""
    if im.mode == "RGB":
        return im
    rgba = im.convert("RGBA")
    flat = Image.new("RGB", rgba.size, (255, 255, 255))
    flat.paste(rgba, mask=rgba.getchannel("A"))
    return flat


def make_thumbnails(
    out_dir: Path, images: Sequence[str | None], *, workers: int | None = None
) -> list[str | None]:
    """Thumbnails for ``images`` (None in, None out), in order, on a thread pool.

    Pillow releases the GIL while decoding and resizing, so threads scale with cores here.
    """
    with ThreadPoolExecutor(workers or min(16, (os.cpu_count() or 1) + 2)) as pool:
        return list(
            pool.map(lambda image: make_thumbnail(out_dir, image) if image else None, images)
        )
