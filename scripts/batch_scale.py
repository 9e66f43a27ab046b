"""The batch result path at scale: a job whose result file is gigabytes, downloaded to disk and
read line by line by a child process, so its peak RSS is the path's own.

- ``prepare(base_url, target_bytes, work)``: at a running emulator (``--batch-delay 0``), one
  4K answer is fetched online to learn its size, then a job of enough 4K requests to reach
  ``target_bytes`` of results is uploaded and created through the client's own batch route, and
  waited for until its result file can be read. The same prompt on every line: the emulator's
  render cache keeps the preparation cheap; the result lines are full 4K answers all the same.
- ``python scripts/batch_scale.py BASE_URL JOB DEST FIGURES``: ``download_results`` of JOB to
  DEST (streamed, as the batch executor does), then every line of DEST through
  ``read_result_line`` (the online classifier: JSON parsed, the image's base64 decoded); writes
  what it measured as JSON to FIGURES. ``scripts/bench`` runs it as a measured child process.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import orjson

from pipeline.core.config import ApiKey
from pipeline.core.types import RawResponse
from pipeline.providers.auth import ApiKeyAuth
from pipeline.providers.base import PreparedRequest
from pipeline.providers.batchapi import BatchRoute, JobState
from pipeline.providers.gemini.provider import GeminiProvider
from pipeline.providers.http import HttpClient, new_http_client

MODEL = "gemini-3.1-flash-image-preview"  # serves 4K
API_KEY = "bench-key-not-a-secret"  # the emulator takes any key unless started with --api-key
POLL_S = 0.5


def _route(base_url: str) -> BatchRoute:
    return GeminiProvider(
        base_url=base_url, auth=ApiKeyAuth(ApiKey(API_KEY, "bench"))
    ).batch_route()


def _body(prompt: str) -> bytes:
    config = {"responseModalities": ["TEXT", "IMAGE"], "imageConfig": {"imageSize": "4K"}}
    return orjson.dumps({"contents": [{"parts": [{"text": prompt}]}], "generationConfig": config})


def prepare(base_url: str, target_bytes: int, work: Path) -> tuple[str, int]:
    """A finished job with about ``target_bytes`` of results: its name and result bytes."""
    return anyio.run(_prepare, base_url, target_bytes, work)


async def _prepare(base_url: str, target_bytes: int, work: Path) -> tuple[str, int]:
    route = _route(base_url)
    await anyio.Path(work).mkdir(parents=True, exist_ok=True)
    body = _body("a studio photo of a navy canvas sneaker")
    url = f"{base_url}/v1beta/models/{MODEL}:generateContent"
    async with new_http_client(None, 2) as http:
        client = HttpClient(http)
        headers = {"content-type": "application/json", "x-goog-api-key": API_KEY}
        answer = await client.fetch("POST", url, body, headers, 600.0)
        if not isinstance(answer, RawResponse) or answer.status != 200:
            raise RuntimeError(f"the 4K answer failed: {answer}")
        lines = max(1, math.ceil(target_bytes / len(answer.body)))
        requests = work / "requests.jsonl"
        request = PreparedRequest(MODEL, url, body, "bench", 600.0, len(body))
        with requests.open("wb") as out:
            for i in range(lines):
                out.write(route.request_line(f"row-{i:06d}", request))
        size = (await anyio.Path(requests).stat()).st_size
        session = await route.start_upload(client, size=size, display_name="bench-batch")
        remote = await route.send_upload(client, session, requests)
        job = await route.create_job(
            client, model=MODEL, display_name="bench-batch", file_name=remote.name
        )
        while not job.state.terminal:
            await anyio.sleep(POLL_S)
            job = await route.get_job(client, job.name)
        if job.state is not JobState.SUCCEEDED or job.output_file is None:
            raise RuntimeError(f"the bench job ended {job.wire_state}")
        # The Files API answers once the results are written (the emulator renders them).
        result = await route.get_file(client, job.output_file)
        while result is None:
            await anyio.sleep(POLL_S)
            result = await route.get_file(client, job.output_file)
        return job.name, result.size_bytes


async def _download(base_url: str, job_name: str, dest: Path) -> tuple[int, float]:
    route = _route(base_url)
    async with new_http_client(None, 2) as http:
        client = HttpClient(http)
        job = await route.get_job(client, job_name)
        started = time.perf_counter()
        size = await route.download_results(client, job, dest)
        return size, time.perf_counter() - started


def measure(base_url: str, job_name: str, dest: Path) -> dict[str, Any]:
    """Download, then read every line; the figures."""
    dest.unlink(missing_ok=True)
    size, download_s = anyio.run(_download, base_url, job_name, dest)
    route = _route(base_url)
    kinds: Counter[str] = Counter()
    images = lines = 0
    started = time.perf_counter()
    with dest.open("rb") as results:  # one line (one 4K answer) in memory at a time
        for line in results:
            read = route.read_result_line(line)
            kinds[str(read.outcome.kind)] += 1
            images += len(read.outcome.images)
            lines += 1
    read_s = time.perf_counter() - started
    return {
        "bytes": size,
        "download_s": download_s,
        "read_s": read_s,
        "lines": lines,
        "images": images,
        "kinds": dict(kinds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("base_url")
    parser.add_argument("job")
    parser.add_argument("dest", type=Path)
    parser.add_argument("figures", type=Path)
    args = parser.parse_args()
    figures = measure(args.base_url, args.job, args.dest)
    args.figures.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
