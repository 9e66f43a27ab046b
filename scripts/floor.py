"""The floor: the CPU one image costs a client at the least, on this machine, with no HTTP.

For a real emulator answer of each size (realistic payload, the bytes a client really
receives), time the work no client can skip: parse the JSON, decode the image part's base64,
hash the image (sha256), and write it to a file (fsync, as a crash-safe writer must). Only
CPU time is counted (``time.process_time``): waiting for the disk is not CPU. The best of
several rounds is reported, because a shared machine only ever adds time.

``scripts/bench`` divides nanobatch's client CPU per image by these figures; run it alone:

    uv run python scripts/floor.py [--sizes 512,1K,2K,4K] [--rounds 5] [--model M] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import anyio
import httpx
import orjson
import pybase64

from pipeline.core.models import DEFAULT_MODEL
from pipeline.emulator import EmulatorConfig, EmulatorTransport, Payload, create_app

# The answers the bench scenarios receive: every scenario (nanobatch's default model and the
# baseline's) asks the default model, so the floor is measured on that model's answer at each
# size. (It once took Pro's JPEG for 4K, a 10 MB answer where the scenarios get a 22 MB PNG
# one: a floor for the wrong answer, half the right one.)
SIZES = ("512", "1K", "2K", "4K")


async def _answers(sizes: list[str], model: str = DEFAULT_MODEL) -> dict[str, bytes]:
    """One real answer body per size, from the emulator in-process (no latency, no faults)."""
    app = create_app(EmulatorConfig(payload=Payload.REALISTIC))
    bodies: dict[str, bytes] = {}
    async with httpx.AsyncClient(
        transport=EmulatorTransport(app), base_url="http://emulator", timeout=60
    ) as client:
        for size in sizes:
            request = {
                "contents": [{"parts": [{"text": f"a lighthouse at dusk, floor {size}"}]}],
                "generationConfig": {
                    "responseModalities": ["TEXT", "IMAGE"],
                    "imageConfig": {"aspectRatio": "1:1", "imageSize": size},
                },
            }
            response = await client.post(
                f"/v1beta/models/{model}:generateContent",
                json=request,
                headers={"x-goog-api-key": "floor"},
            )
            response.raise_for_status()
            bodies[size] = response.content
    return bodies


def _image_data(answer: dict[str, object]) -> str:
    """The base64 text of the answer's last non-thought image part."""
    candidates = answer["candidates"]
    assert isinstance(candidates, list)
    data = ""
    for part in candidates[0]["content"]["parts"]:
        inline = part.get("inlineData")
        if inline and not part.get("thought"):
            data = inline["data"]
    return data


def unavoidable_work(body: bytes, directory: Path) -> int:
    """Parse, decode, hash, write and fsync one answer's image; returns the image's size."""
    image = pybase64.b64decode(_image_data(orjson.loads(body)), validate=True)
    digest = hashlib.sha256(image).hexdigest()
    path = directory / f"{digest[:16]}.img"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, image)
        os.fsync(fd)
    finally:
        os.close(fd)
    path.unlink()
    return len(image)


def measure(body: bytes, rounds: int, per_round: int) -> float:
    """The best CPU seconds per image over ``rounds`` rounds of ``per_round`` images."""
    best = float("inf")
    with tempfile.TemporaryDirectory(prefix="nanobatch-floor-") as tmp:
        directory = Path(tmp)
        unavoidable_work(body, directory)  # warm the allocator and the page cache
        for _ in range(rounds):
            started = time.process_time()
            for _ in range(per_round):
                unavoidable_work(body, directory)
            best = min(best, (time.process_time() - started) / per_round)
    return best


def floors(
    sizes: list[str], rounds: int = 5, model: str = DEFAULT_MODEL
) -> dict[str, dict[str, float]]:
    """Per size: the answer's bytes, the image's bytes and the floor in CPU milliseconds."""
    bodies = anyio.run(_answers, sizes, model)
    figures: dict[str, dict[str, float]] = {}
    for size, body in bodies.items():
        per_round = max(3, int(40_000_000 / len(body)))  # ~40 MB of JSON per round
        image_bytes = len(pybase64.b64decode(_image_data(orjson.loads(body))))
        figures[size] = {
            "answer_bytes": len(body),
            "image_bytes": image_bytes,
            "cpu_ms": 1000 * measure(body, rounds, per_round),
        }
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="512,1K,2K,4K")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="the model whose answers to use")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown size {unknown[0]!r}; use some of {', '.join(SIZES)}")
    figures = floors(sizes, args.rounds, args.model)
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print("size  answer MB  image MB  floor CPU ms/image")
    for size, f in figures.items():
        print(
            f"{size:>4}  {f['answer_bytes'] / 1e6:9.2f}  {f['image_bytes'] / 1e6:8.2f}"
            f"  {f['cpu_ms']:18.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
