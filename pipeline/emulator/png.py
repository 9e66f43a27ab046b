"""A PNG writer for palette images whose only per-request part is a band of rows.

A "realistic" PNG is stored uncompressed (deflate stored blocks), which is what makes it as big
as a real photo-like PNG. Writing one per request would cost a full copy, CRC and base64 of a
megabyte or more; instead the picture is split into three row segments (top, band, bottom),
each in its own IDAT chunk, and every chunk is padded with empty stored blocks so its length
is a multiple of 3. Then the base64 of the file is the concatenation of the pieces' base64, and
only the small header, the band and the final Adler-32 chunk are encoded per request.

Raw rows carry their PNG filter byte (0, "None") as column 0, so a segment is simply the
``tobytes()`` of a ``(width + 1) x rows`` palette image whose first column is index 0.
"""

from __future__ import annotations

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"
ZLIB_HEADER = b"\x78\x01"  # deflate, 32K window, no preset dictionary, fastest level
_EMPTY_STORED_BLOCK = b"\x00\x00\x00\xff\xff"  # non-final, LEN 0, NLEN 0xffff
_MAX_STORED = 65535
_ADLER_BASE = 65521
IEND = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))


def chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))
    )


def header(width: int, height: int, palette: bytes) -> bytes:
    """Signature, IHDR and PLTE; its length is a multiple of 3 (45 + palette bytes)."""
    if len(palette) % 3 or not 3 <= len(palette) <= 768:
        raise ValueError("a PNG palette is 1 to 256 RGB triples")
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)  # 8-bit palette, no interlace
    return SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"PLTE", palette)


def _stored_blocks(raw: bytes, *, final: bool) -> list[bytes]:
    blocks: list[bytes] = []
    view = memoryview(raw)
    for start in range(0, len(raw), _MAX_STORED):
        piece = view[start : start + _MAX_STORED]
        last = final and start + _MAX_STORED >= len(raw)
        blocks.append(
            bytes((1 if last else 0,)) + struct.pack("<HH", len(piece), len(piece) ^ 0xFFFF)
        )
        blocks.append(bytes(piece))
    if final and not raw:
        blocks.append(b"\x01\x00\x00\xff\xff")
    return blocks


def stored_idat(raw: bytes, *, first: bool, final: bool) -> bytes:
    """One IDAT chunk holding ``raw`` as stored deflate blocks, its length a multiple of 3.

    ``first`` puts the zlib header in front; ``final`` marks the stream's last block. The
    alignment padding (0-2 empty stored blocks) goes before the data so a final block stays last.
    """
    prefix = ZLIB_HEADER if first else b""
    body = _stored_blocks(raw, final=final)
    length = 12 + len(prefix) + sum(len(b) for b in body)
    pad = next(k for k in range(3) if (length + 5 * k) % 3 == 0)
    data = b"".join([prefix, _EMPTY_STORED_BLOCK * pad, *body])
    return chunk(b"IDAT", data)


def adler32_combine(adler1: int, adler2: int, len2: int) -> int:
    """Adler-32 of A+B from those of A and B (zlib's adler32_combine, which Python lacks)."""
    a1, b1 = adler1 & 0xFFFF, adler1 >> 16
    a2, b2 = adler2 & 0xFFFF, adler2 >> 16
    a = (a1 + a2 - 1) % _ADLER_BASE
    b = (b1 + b2 + len2 * (a1 - 1)) % _ADLER_BASE
    return (b << 16) | a


def trailer(adler: int) -> bytes:
    """The zlib stream's Adler-32 in an IDAT of its own, then IEND."""
    return chunk(b"IDAT", struct.pack(">I", adler)) + IEND


def deflate_segment(raw: bytes, *, final: bool) -> bytes:
    """Raw deflate of one segment, ending on a full flush (or the stream's end if ``final``).

    A full flush byte-aligns the output and forgets the history, so independently compressed
    segments concatenate into one valid deflate stream: compressed top and bottom are cached,
    only the band is compressed per request ("compact" payloads).
    """
    compressor = zlib.compressobj(1, zlib.DEFLATED, -15)
    return compressor.compress(raw) + compressor.flush(
        zlib.Z_FINISH if final else zlib.Z_FULL_FLUSH
    )


def compressed(width: int, height: int, palette: bytes, segments: list[bytes], adler: int) -> bytes:
    """A compressed palette PNG from deflate segments (the last one final) and the Adler-32."""
    stream = b"".join([ZLIB_HEADER, *segments, adler.to_bytes(4, "big")])
    return header(width, height, palette) + chunk(b"IDAT", stream) + IEND
