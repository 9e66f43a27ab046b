"""Measure ``nanobatch validate`` on a large catalogue manifest: rows, time, peak memory.

Builds (once, under a temp dir) a CSV of N rows whose reference photos cycle through K
distinct files, then runs ``nanobatch validate`` on it as a child process and reports its
wall time and peak RSS.

Run: ``uv run python scripts/validate_scale.py [--rows 100000] [--photos 50]``
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image


def build(folder: Path, rows: int, photos: int) -> Path:
    (folder / "photos").mkdir(parents=True, exist_ok=True)
    for k in range(photos):
        Image.new("RGB", (640, 480), (k * 5 % 256, 120, 200)).save(folder / "photos" / f"p{k}.jpg")
    manifest = folder / "catalogue.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "sku", "title", "colour", "images", "aspect_ratio"])
        for i in range(rows):
            writer.writerow([f"sku-{i:07d}", f"SKU{i}", "canvas sneaker", ["red", "navy"][i % 2],
                             f"photos/p{i % photos}.jpg", "4:5"])  # fmt: skip
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--photos", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = build(Path(tmp), args.rows, args.photos)
        command = [sys.executable, "-m", "pipeline", "validate", str(manifest),
                   "--prompt-template", "Studio photo of a {title} in {colour}"]  # fmt: skip
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 1)
            os.execv(sys.executable, command)
        _, status, usage = os.wait4(pid, 0)
        wall = time.monotonic() - started
    code = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    print(
        f"validate: {args.rows:,} rows, {args.photos} distinct photos: exit {code}, {wall:.1f} s, "
        f"peak RSS {usage.ru_maxrss / 1024:.0f} MB, CPU {cpu:.1f} s"
    )


if __name__ == "__main__":
    main()
