"""A stored image's pixel size: read from a PNG's header without Pillow, and the same answer as
Pillow's for every PNG, damaged or not; anything else still goes through Pillow."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from pipeline.core.pngsize import HEADER_BYTES, png_size
from pipeline.store.storage import image_size


def encoded(mode: str, size: tuple[int, int], fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size).save(out, fmt)
    return out.getvalue()


def pillow_size(data: bytes) -> tuple[int | None, int | None]:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:
        return None, None


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "RGBA", "LA", "I;16"])
@pytest.mark.parametrize("size", [(1, 1), (512, 384), (17, 4096)])
def test_a_png_header_gives_the_size_pillow_gives(mode: str, size: tuple[int, int]) -> None:
    data = encoded(mode, size)
    assert png_size(data[:HEADER_BYTES]) == size == pillow_size(data)


def test_a_damaged_header_reads_as_pillow_reads_it() -> None:
    """Every bit flip in the first 33 bytes: the size, or "not an image", agrees with Pillow."""
    data = encoded("RGB", (300, 200))
    for at in range(HEADER_BYTES):
        for bit in range(8):
            damaged = bytearray(data)
            damaged[at] ^= 1 << bit
            assert image_size(bytes(damaged)) == pillow_size(bytes(damaged)), (at, bit)


def test_other_formats_and_files_still_read(tmp_path: Path) -> None:
    jpeg = encoded("RGB", (64, 48), "JPEG")
    assert png_size(jpeg) is None
    assert image_size(jpeg) == (64, 48)
    spooled = tmp_path / "image"
    spooled.write_bytes(encoded("RGBA", (30, 20)))
    assert image_size(spooled) == (30, 20)
    assert image_size(b"\x89PNG\r\n\x1a\n") == (None, None)  # the signature alone
    assert image_size(b"") == (None, None)
