"""The benchmark's baseline: what a careful user writes instead of installing nanobatch.

A loop around the official ``google-genai`` SDK, as the vendor articles show it: the async
client with the SDK's own retry options turned on, an ``asyncio.Semaphore`` bounding requests
in flight, one task per manifest row gathered at once, each image written to a file and one
JSON line per row appended to a results file. No resume, no rate limiter, no fsync: a typical
script does not have them, and what they cost or save is part of what the benchmark measures.

    uv run python scripts/baseline_sdk.py MANIFEST.csv --out DIR --base-url URL \\
        [--model M] [--image-size S] [--concurrency N]

The key comes from ``GEMINI_API_KEY`` (the SDK's convention). Exit code 0 when every row
produced an image, 1 otherwise.

Which transport the SDK sends through depends on what is installed beside it: with
``google-genai[aiohttp]`` (the SDK's fastest documented setup; ``scripts/bench`` builds such an
environment for it) the SDK uses aiohttp, else its httpx-style client. The script says which
it used on its first line of output and in ``DIR/baseline.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import importlib.metadata
import json
import os
import sys
import time
from pathlib import Path
from typing import IO, Any

from google import genai
from google.genai import errors, types

DEFAULT_MODEL = "gemini-3.1-flash-image-preview"
_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path, help="CSV with id and prompt columns")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--base-url", required=True, help="API endpoint (the emulator)")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--image-size", default=None, help="512, 1K, 2K or 4K")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    return parser.parse_args(argv)


def _image_parts(response: types.GenerateContentResponse) -> list[types.Blob]:
    """The answer's final images; Gemini 3 models also send interim "thought" images."""
    blobs: list[types.Blob] = []
    for part in response.parts or []:
        if part.thought or part.inline_data is None or not part.inline_data.data:
            continue
        blobs.append(part.inline_data)
    return blobs


async def _generate_row(
    row: dict[str, str],
    *,
    client: genai.Client,
    semaphore: asyncio.Semaphore,
    config: types.GenerateContentConfig,
    args: argparse.Namespace,
    results: IO[str],
) -> bool:
    """Generate one row's image and record it; True if an image was written."""
    record: dict[str, Any] = {"id": row["id"]}
    async with semaphore:
        record["started"] = time.time()
        try:
            contents: list[types.PartUnion] = [row["prompt"]]
            response = await client.aio.models.generate_content(
                model=args.model, contents=contents, config=config
            )
        except errors.APIError as e:  # what is left after the SDK's own retries
            record.update(status="failed", code=e.code, error=str(e.message))
        except Exception as e:  # transport errors the SDK re-raises after its retries
            record.update(status="failed", error=f"{type(e).__name__}: {e}")
        else:
            blobs = _image_parts(response)
            paths = []
            for n, blob in enumerate(blobs):
                ext = _EXTENSIONS.get(blob.mime_type or "", "bin")
                suffix = f"_{n + 1}" if len(blobs) > 1 else ""
                path = args.out / "images" / f"{row['id']}{suffix}.{ext}"
                assert blob.data is not None
                path.write_bytes(blob.data)
                paths.append(str(path.relative_to(args.out)))
            finish = response.candidates[0].finish_reason if response.candidates else None
            record.update(
                status="succeeded" if paths else "no_image",
                paths=paths,
                finish_reason=str(finish) if finish else None,
            )
    record["finished"] = time.time()
    results.write(json.dumps(record) + "\n")
    return bool(record["status"] == "succeeded")


def transport(client: genai.Client) -> str:
    """The HTTP stack the SDK's async client sends through, with its version.

    The SDK has no public way to say which it chose; this asks the same private question it
    asks itself (aiohttp when importable and no httpx transport was passed in), and otherwise
    names the httpx-family class its async client derives from.
    """
    api = client._api_client
    use_aiohttp = getattr(api, "_use_aiohttp", None)
    if callable(use_aiohttp) and use_aiohttp():
        return f"aiohttp {importlib.metadata.version('aiohttp')}"
    for cls in type(getattr(api, "_async_httpx_client", None)).__mro__:
        package = cls.__module__.partition(".")[0]
        if package in ("httpx", "httpx2"):
            return f"{package} {importlib.metadata.version(package)}"
    return "unknown"


async def _run(args: argparse.Namespace, rows: list[dict[str, str]], results: IO[str]) -> int:
    client = genai.Client(
        api_key=os.environ["GEMINI_API_KEY"],
        http_options=types.HttpOptions(
            base_url=args.base_url,
            # The SDK's documented defaults, turned on explicitly: 5 attempts on 408, 429 and
            # 5xx with exponential backoff and jitter (1 s, 2 s, 4 s, 8 s).
            retry_options=types.HttpRetryOptions(attempts=5, initial_delay=1.0, max_delay=60.0),
        ),
    )
    setup = {
        "sdk": f"google-genai {importlib.metadata.version('google-genai')}",
        "transport": transport(client),
        "python": sys.version.split()[0],
    }
    print(f"baseline: {setup['sdk']} sending through {setup['transport']}", flush=True)
    (args.out / "baseline.json").write_text(json.dumps(setup) + "\n", encoding="utf-8")
    config = types.GenerateContentConfig(
        response_modalities=["IMAGE"],
        image_config=types.ImageConfig(image_size=args.image_size) if args.image_size else None,
    )
    semaphore = asyncio.Semaphore(args.concurrency)
    done = await asyncio.gather(
        *(
            _generate_row(
                row, client=client, semaphore=semaphore, config=config, args=args, results=results
            )
            for row in rows
        )
    )
    await client.aio.aclose()
    succeeded = sum(done)
    print(f"baseline: {succeeded} of {len(rows)} rows produced an image")
    return 0 if succeeded == len(rows) else 1


def main(argv: list[str] | None = None) -> int:
    """Run the baseline; returns the exit code."""
    args = _parse_args(argv)
    with open(args.manifest, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    with open(args.out / "results.jsonl", "a", encoding="utf-8") as results:
        return asyncio.run(_run(args, rows, results))


if __name__ == "__main__":
    sys.exit(main())
