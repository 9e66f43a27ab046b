"""A PNG's pixel size from its header, without Pillow.

Every stored image's width and height go into its ledger record. Opening each with Pillow
(header only, no decode) cost ~2% of a run's CPU at 512 px, for what a PNG states in its first
33 bytes; the image models answer PNG by default. Anything else, or a PNG whose header is not
exactly as the format says (a damaged IHDR, a bad checksum), is left to Pillow.
"""

from __future__ import annotations

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"
HEADER_BYTES = 33  # signature, IHDR's length and type, its 13 bytes, its CRC
# (bit depth, colour type) pairs the format allows (PNG spec, 11.2.2 IHDR).
_VALID = {(1, 0), (2, 0), (4, 0), (8, 0), (16, 0), (8, 2), (16, 2), (1, 3), (2, 3), (4, 3),
          (8, 3), (8, 4), (16, 4), (8, 6), (16, 6)}  # fmt: skip
# Pillow refuses to open an image above this many pixels (a decompression bomb): so do we,
# by leaving it to Pillow, which says why.
_MAX_PIXELS = 2 * 89_478_485


def png_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) if ``head`` (an image's first bytes, at least ``HEADER_BYTES``) starts a
    PNG with a well-formed IHDR chunk; None otherwise."""
    if len(head) < HEADER_BYTES or not head.startswith(SIGNATURE):
        return None
    length, kind = struct.unpack_from(">I4s", head, 8)
    if length != 13 or kind != b"IHDR":
        return None
    (crc,) = struct.unpack_from(">I", head, 29)
    if zlib.crc32(head[12:29]) != crc:
        return None
    width, height, depth, colour, compression, filtering, interlace = struct.unpack_from(
        ">IIBBBBB", head, 16
    )
    if (depth, colour) not in _VALID or compression or filtering or interlace > 1:
        return None
    if not (0 < width < 2**31 and 0 < height < 2**31) or width * height > _MAX_PIXELS:
        return None
    return width, height
