"""What writing an image's bytes to a new file costs this machine's CPU, three ways.

A client keeps every image it writes, so each write lands in memory the kernel takes for its
page cache. On a virtual machine, memory the guest has not touched lately is backed by the host
on first touch, which the guest pays as CPU time; memory the kernel has just freed is reused at
no such cost. This script writes files of a 512 px, 1K and 4K image's size into a temp folder
and reports the CPU per file and per MB:

- kept: written and left in the page cache (what a plain client does);
- kept + fsync: also made durable (what a crash-safe client must do);
- kept + fsync + let go: its cached pages dropped once durable (``posix_fadvise(DONTNEED)``,
  what ``store.storage.drop_cached`` does for every image nanobatch stores).

    uv run python scripts/page_cost.py [--dir DIR] [--scale 1.0]

docs/benchmarks.md quotes it. Run it where the images go (``--dir``): another file system may
behave otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

SIZES_MB = {"512": 0.26, "1K": 1.05, "4K": 16.8}  # the default model's PNG images
FILES = {"512": 300, "1K": 150, "4K": 15}  # ~80-250 MB per way and size
WAYS = ("kept", "kept + fsync", "kept + fsync + let go")


def write(folder: Path, name: str, data: bytes, way: str) -> None:
    fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        if "fsync" in way:
            os.fsync(fd)
        if "let go" in way:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def cpu_per_file(folder: Path, size: str, way: str, files: int) -> float:
    """CPU seconds (user + system) per file of ``size``, each a new file kept until the end."""
    data = os.urandom(int(SIZES_MB[size] * 2**20))
    before = os.times()
    for i in range(files):
        write(folder, f"{size}-{WAYS.index(way)}-{i}", data, way)
    after = os.times()
    return (after.user - before.user + after.system - before.system) / files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: /tmp)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the number of files")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="nanobatch-page-cost-", dir=args.dir))
    try:
        print("size  way                     ms per file  ms per MB")
        for size, mb in SIZES_MB.items():
            files = max(3, int(FILES[size] * args.scale))
            for way in WAYS:
                ms = 1000 * cpu_per_file(folder, size, way, files)
                print(f"{size:>4}  {way:22}  {ms:11.2f}  {ms / mb:9.2f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
