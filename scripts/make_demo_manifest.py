"""Regenerate the demo manifest and its source photos (``manifests/``).

The photos are simple product silhouettes drawn with Pillow, small enough to commit.
Run: ``uv run python scripts/make_demo_manifest.py``.
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent / "manifests"

PRODUCTS = [
    ("sneaker", "a canvas sneaker", (220, 60, 60)),
    ("mug", "a ceramic coffee mug", (60, 120, 200)),
    ("backpack", "a waxed cotton backpack", (70, 140, 80)),
    ("lamp", "a brass desk lamp", (200, 160, 40)),
]
COLOURS = ["red", "navy", "olive", "sand", "charcoal", "teal"]
SCENES = [
    "on a white studio background, soft shadow",
    "on a marble kitchen counter, morning light",
    "in a minimalist living room, 35mm photo",
    "on a wooden table next to a window",
    "on a concrete plinth, hard noon shadow",
]


def draw_source(name: str, colour: tuple[int, int, int], fmt: str) -> str:
    """A 512x512 reference photo: a coloured product shape on a light background."""
    im = Image.new("RGB", (512, 512), (238, 236, 232))
    d = ImageDraw.Draw(im)
    if name == "sneaker":
        d.rounded_rectangle((80, 250, 440, 360), radius=50, fill=colour)
        d.rectangle((80, 340, 440, 370), fill=(250, 250, 250))
    elif name == "mug":
        d.rectangle((160, 170, 330, 380), fill=colour)
        d.ellipse((300, 220, 390, 320), outline=colour, width=22)
    elif name == "backpack":
        d.rounded_rectangle((150, 120, 360, 420), radius=60, fill=colour)
        d.rectangle((190, 260, 320, 360), outline=(40, 40, 40), width=6)
    else:
        d.polygon([(200, 140), (320, 140), (360, 230), (160, 230)], fill=colour)
        d.line((260, 230, 260, 400), fill=(90, 90, 90), width=10)
        d.rectangle((200, 400, 320, 420), fill=(90, 90, 90))
    ext = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}[fmt]
    path = ROOT / "images" / f"{name}.{ext}"
    im.save(path, fmt)
    return f"images/{path.name}"


def main() -> None:
    (ROOT / "images").mkdir(parents=True, exist_ok=True)
    formats = itertools.cycle(["PNG", "JPEG", "PNG", "WEBP"])
    sources = {name: draw_source(name, rgb, next(formats)) for name, _, rgb in PRODUCTS}
    rows: list[dict[str, str]] = []
    combos = itertools.product(PRODUCTS, COLOURS, SCENES)
    for n, ((name, title, _), colour, scene) in enumerate(combos, 1):
        edit = n % 3 == 0  # a third of the rows edit the reference photo
        prompt = (
            f"Recolour this product to {colour} and place it {scene}"
            if edit
            else f"Product photo of {title} in {colour}, {scene}"
        )
        rows.append(
            {
                "id": f"{name}-{colour}-{n:03d}",
                "sku": f"SKU-{n:04d}",
                "prompt": prompt,
                "images": sources[name] if edit else "",
                "aspect_ratio": "4:5" if n % 4 == 0 else "",
                "image_size": "512" if n % 5 == 0 else "",
            }
        )
    # Rows the emulator refuses deterministically (trigger tokens), as a real catalogue
    # occasionally has prompts a safety filter stops.
    rows += [
        {"id": "refusal-blocked", "sku": "SKU-9001", "prompt": "A poster of a weapon #block"},
        {"id": "refusal-unsafe", "sku": "SKU-9002", "prompt": "A gory scene #unsafe"},
        {"id": "refusal-text-only", "sku": "SKU-9003", "prompt": "Remove the watermark #noimage"},
    ]
    with open(ROOT / "demo.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(
            f, fieldnames=["id", "sku", "prompt", "images", "aspect_ratio", "image_size"]
        )
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {ROOT / 'demo.csv'}")


if __name__ == "__main__":
    main()
