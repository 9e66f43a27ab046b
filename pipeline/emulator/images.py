"""Pictures for generated answers: deterministic, visibly derived from the request, and cheap.

Every output is a title card: concentric rings in two colours (one from a hash of the prompt,
one from the request fingerprint) behind a band that shows the prompt's words and the model,
size and ratio, so a contact sheet of a run is readable. The rings of a given pixel size are
rendered once and cached as a layout; a request only draws its text band and picks a palette.
Encoded images are cached (as base64) by content key: fingerprint, pixel size and format.
A picture depends on nothing but the request and the payload, so the apps of one process (a
test suite makes hundreds) share their caches: one pair per payload and byte budget, its keys
holding everything a picture is drawn from.

Real-world byte sizes (``Payload.REALISTIC``) come from a stored (uncompressed) PNG, assembled
from cached pieces by ``png``, or for JPEG from a comment segment that pads the file to a
typical size. ``Payload.COMPACT`` compresses the same pixels to a few kilobytes.
"""

from __future__ import annotations

import base64
import colorsys
import functools
import hashlib
import io
import zlib
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from pipeline.emulator import png
from pipeline.emulator.config import Payload
from pipeline.emulator.lru import ByteLru
from pipeline.emulator.validate import GenerationRequest

_RINGS = 16  # palette indices 1..16 are the rings; 0 is the band; 17, 18 are text colours
_TEXT, _SUBTITLE = 17, 18
_PALETTE_SIZE = 32
_JPEG_BYTES_PER_PIXEL = 0.45  # padding target for realistic JPEGs (~470 KB at 1K)
_PADDING = b"nanobatch emulator: padding to a realistic size. "
_LINE_PX = 12  # line height of Pillow's built-in bitmap font
# Decoding or encoding beyond this many pixels is done off the event loop.
THREAD_PIXELS = 2_500_000


Encoded = tuple[bytes, ...]
"""An image as base64 pieces whose concatenation is the base64 of the file."""


@dataclass(frozen=True, slots=True)
class _Layout:
    """The rings of one pixel size, split around the text band; rows carry a filter byte."""

    width: int
    height: int
    band_top: int
    band_bottom: int
    top_raw: bytes
    bottom_raw: bytes
    top_adler: int
    bottom_adler: int
    top_b64: bytes  # realistic PNG: the aligned IDAT chunks of top and bottom, in base64
    bottom_b64: bytes
    top_deflated: bytes  # compact PNG: top and bottom as deflate segments
    bottom_deflated: bytes


def _hue(data: bytes) -> float:
    return hashlib.sha256(data).digest()[0] / 256.0


def _rgb(hue: float, saturation: float, value: float) -> bytes:
    return bytes(round(c * 255) for c in colorsys.hsv_to_rgb(hue, saturation, value))


def palette(prompt_hue: float, accent_hue: float) -> bytes:
    entries = [_rgb(prompt_hue, 0.55, 0.22)]  # band
    for i in range(_RINGS):
        t = i / (_RINGS - 1)
        hue = prompt_hue + (accent_hue - prompt_hue) * t
        entries.append(_rgb(hue % 1.0, 0.45 + 0.35 * t, 0.97 - 0.5 * t))
    entries.append(b"\xf5\xf5\xf0")  # title text
    entries.append(_rgb(prompt_hue, 0.25, 0.95))  # subtitle
    entries.extend(b"\x00\x00\x00" for _ in range(_PALETTE_SIZE - len(entries)))
    return b"".join(entries)


def _rings(width: int, height: int) -> Image.Image:
    """Ring indices 1..16 as a ``(width + 1) x height`` image whose column 0 is 0."""
    gradient = Image.radial_gradient("L").resize((width, height), Image.Resampling.BILINEAR)
    levels = gradient.point([1 + min(v, 255) * _RINGS // 256 for v in range(256)])
    canvas = Image.new("L", (width + 1, height), 0)
    canvas.paste(levels, (1, 0))
    return canvas


def _jpeg_padded(jpeg: bytes, target: int) -> bytes:
    """Insert COM segments after SOI until the file is about ``target`` bytes."""
    missing = target - len(jpeg)
    if missing <= 4:
        return jpeg
    segments = []
    while missing > 4:
        size = min(missing - 4, 65533)
        filler = (_PADDING * (size // len(_PADDING) + 1))[:size]
        segments.append(b"\xff\xfe" + (size + 2).to_bytes(2, "big") + filler)
        missing -= size + 4
    return jpeg[:2] + b"".join(segments) + jpeg[2:]


@functools.cache
def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default_imagefont()  # read-only once loaded: shared like the caches


class Renderer:
    """Renders and caches the images of answers, one per app (its caches are shared)."""

    def __init__(self, payload: Payload, cache_bytes: int) -> None:
        self._payload = payload
        self._images = ByteLru.shared(("images", payload), cache_bytes)
        self._layouts = ByteLru.shared(("layouts", payload), max(cache_bytes // 2, 64 << 20))
        self._font = _font()

    def final_image(self, request: GenerationRequest) -> Encoded:
        """The answer's image in base64 (ASCII pieces, ready to splice into JSON)."""
        width, height = request.model.pixels(request.image_size, request.aspect_ratio)
        # The fingerprint covers the model id and the body; the rest is what this app's model
        # table made of them, which another app's may not.
        key = ("final", request.fingerprint, width, height, request.mime_type,
               request.model.short_name, request.image_size, request.aspect_ratio)  # fmt: skip
        cached = self._images.get(key)
        if isinstance(cached, tuple):
            return cached
        layout = self._layout(width, height)
        colours = palette(_hue(request.prompt.encode()), _hue(request.fingerprint))
        band = self._band(layout, request)
        encoded: Encoded
        if request.mime_type == "image/jpeg":
            encoded = (base64.b64encode(self._jpeg(layout, band, colours)),)
        elif self._payload is Payload.REALISTIC:
            encoded = self._stored_png(layout, band, colours)
        else:
            segments = [
                layout.top_deflated,
                png.deflate_segment(band, final=False),
                layout.bottom_deflated,
            ]
            adler = self._adler(layout, band)
            encoded = (base64.b64encode(png.compressed(width, height, colours, segments, adler)),)
        # The layout's pieces are shared with every image of this size: count only the rest.
        shared = len(layout.top_b64) + len(layout.bottom_b64) if len(encoded) > 1 else 0
        self._images.put(key, encoded, sum(len(piece) for piece in encoded) - shared)
        return encoded

    def thought_image(self, request: GenerationRequest) -> Encoded:
        """A small interim image (rings only), cached by size and colour family."""
        width, height = request.model.pixels(request.image_size, request.aspect_ratio)
        width, height = max(width // 4, 32), max(height // 4, 32)
        hue_bucket = int(_hue(request.prompt.encode()) * 12)
        key = ("thought", width, height, request.mime_type, hue_bucket)
        cached = self._images.get(key)
        if isinstance(cached, tuple):
            return cached
        colours = palette(hue_bucket / 12, (hue_bucket / 12 + 0.5) % 1.0)
        picture = _rings(width, height).crop((1, 0, width + 1, height)).convert("P")
        picture.putpalette(colours)
        out = io.BytesIO()
        if request.mime_type == "image/jpeg":
            picture.convert("RGB").save(out, "JPEG", quality=60)
        else:
            picture.save(out, "PNG", compress_level=1)
        encoded = (base64.b64encode(out.getvalue()),)
        self._images.put(key, encoded, len(encoded[0]))
        return encoded

    def _layout(self, width: int, height: int) -> _Layout:
        key = (width, height)
        cached = self._layouts.get(key)
        if isinstance(cached, _Layout):
            return cached
        band_top, band_bottom = round(height * 0.41), round(height * 0.59)
        rings = _rings(width, height).tobytes()
        row = width + 1
        top_raw, bottom_raw = rings[: band_top * row], rings[band_bottom * row :]
        top_b64 = bottom_b64 = top_deflated = bottom_deflated = b""
        if self._payload is Payload.REALISTIC:
            top_b64 = base64.b64encode(png.stored_idat(top_raw, first=True, final=False))
            bottom_b64 = base64.b64encode(png.stored_idat(bottom_raw, first=False, final=True))
        else:
            top_deflated = png.deflate_segment(top_raw, final=False)
            bottom_deflated = png.deflate_segment(bottom_raw, final=True)
        layout = _Layout(
            width=width,
            height=height,
            band_top=band_top,
            band_bottom=band_bottom,
            top_raw=top_raw,
            bottom_raw=bottom_raw,
            top_adler=zlib.adler32(top_raw),
            bottom_adler=zlib.adler32(bottom_raw),
            top_b64=top_b64,
            bottom_b64=bottom_b64,
            top_deflated=top_deflated,
            bottom_deflated=bottom_deflated,
        )
        size = len(top_raw) + len(bottom_raw) + len(top_b64) + len(bottom_b64)
        size += len(top_deflated) + len(bottom_deflated)
        self._layouts.put(key, layout, size)
        return layout

    def _band(self, layout: _Layout, request: GenerationRequest) -> bytes:
        """The text band's raw rows (filter byte first): the prompt's words and a subtitle.

        Text is drawn with Pillow's built-in bitmap font at its native size, then enlarged with
        nearest-neighbour scaling: crisp pixel letters for a fraction of FreeType's cost.
        """
        width, height = layout.width, layout.band_bottom - layout.band_top
        scale = max(1, height // (_LINE_PX * 5))
        small_width, small_height = -(-width // scale), -(-height // scale)
        text = Image.new("P", (small_width, small_height), 0)
        draw = ImageDraw.Draw(text)
        margin = max(small_width // 40, 2)
        words = " ".join(request.prompt.split()) or "(no prompt)"
        lines = _wrap(words, self._font, small_width - 2 * margin)
        if len(lines) > 3:
            lines = [*lines[:2], lines[2][: max(len(lines[2]) - 3, 0)] + "..."]
        subtitle = f"{request.model.short_name} · {request.image_size} · {request.aspect_ratio}"
        if request.images:
            count = len(request.images)
            subtitle += f" · {count} input image" + ("s" if count > 1 else "")
        y = max((small_height - _LINE_PX * (len(lines) + 1) - _LINE_PX // 2) // 2, 1)
        for line in lines:
            draw.text((margin, y), _latin1(line), fill=_TEXT, font=self._font)
            y += _LINE_PX
        draw.text((margin, y + _LINE_PX // 2), _latin1(subtitle), fill=_SUBTITLE, font=self._font)
        if scale > 1:
            text = text.resize((width, height), Image.Resampling.NEAREST)
        # Column 0 of each row is its PNG filter byte (0, "None"); the band's own index 0.
        band = Image.new("P", (width + 1, height), 0)
        band.paste(text, (1, 0))
        return band.tobytes()

    def _stored_png(self, layout: _Layout, band: bytes, colours: bytes) -> Encoded:
        head = png.header(layout.width, layout.height, colours)
        middle = png.stored_idat(band, first=False, final=False)
        adler = self._adler(layout, band)
        # Every piece but the last is a multiple of 3 bytes long, so base64 concatenates.
        return (
            base64.b64encode(head),
            layout.top_b64,
            base64.b64encode(middle),
            layout.bottom_b64,
            base64.b64encode(png.trailer(adler)),
        )

    @staticmethod
    def _adler(layout: _Layout, band: bytes) -> int:
        """Adler-32 of all raw rows, from the layout's cached sums and the band's."""
        adler = png.adler32_combine(layout.top_adler, zlib.adler32(band), len(band))
        return png.adler32_combine(adler, layout.bottom_adler, len(layout.bottom_raw))

    def _jpeg(self, layout: _Layout, band: bytes, colours: bytes) -> bytes:
        width, height = layout.width, layout.height
        raw = layout.top_raw + band + layout.bottom_raw
        picture = Image.frombytes("P", (width + 1, height), raw).crop((1, 0, width + 1, height))
        picture.putpalette(colours)
        out = io.BytesIO()
        picture.convert("RGB").save(out, "JPEG", quality=90)
        jpeg = out.getvalue()
        if self._payload is Payload.REALISTIC:
            jpeg = _jpeg_padded(jpeg, int(width * height * _JPEG_BYTES_PER_PIXEL))
        return jpeg


def _latin1(text: str) -> str:
    """The bitmap font has Latin-1 glyphs only; anything else is drawn as '?'."""
    return text.encode("latin-1", "replace").decode("latin-1")


def _wrap(text: str, font: ImageFont.ImageFont, width: int) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if current and font.getlength(_latin1(candidate)) > width:
            lines.append(current)
            current = word
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines
