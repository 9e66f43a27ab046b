"""A bare crash-safe client: a generateContent loop that keeps the durability rules nanobatch
keeps and does nothing else, to measure nanobatch against (``scripts/bench`` scenarios 1, 2).

Per row: the request body built with orjson, sent through aiohttp (C-accelerated parsing, no
wrapper), the answer parsed with orjson, the image's base64 decoded with pybase64 and hashed with
sha256 (the floor's work, ``scripts/floor.py``), then, in a worker thread, the image written to a
temp file, fsynced and renamed into place. One task group-commits the rows' records: a line each
appended to a journal, the images' folder fsynced (their names durable), then the journal. So a
kill or a power cut never leaves a recorded row without its image, the rule nanobatch keeps.

What it leaves out, and nanobatch does not: classification (refusals, errors, retries at the
server's delay), rate limits, the spend, provenance records, the attempt history, reruns, disk
guards, progress, logs and the Parquet ledger. Its CPU per image is what the durability rules
and the floor's work cost a client on this machine, not a client anyone should run.

    uv run python scripts/durable_client.py MANIFEST.csv --out DIR --base-url URL \
        --concurrency 64 --image-size 512
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import os
import sys
from pathlib import Path

import aiohttp
import orjson
import pybase64

MODEL = "gemini-3.1-flash-image-preview"
GROUP_S = 0.005  # how long the committer gathers records before one journal fsync
# --no-fsync: the same files without their fsyncs (nor the page-cache drop that follows an
# image's fsync), to show what durability costs.
SYNC = True


def _write_image(folder: int, name: str, data: bytes) -> None:
    """Temp file, write, fsync, rename: the image's bytes durable before its name."""
    tmp = f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=folder)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if SYNC:
            os.fsync(fd)
            # As nanobatch does (store.storage.drop_cached): on this VM a write into memory the
            # kernel takes fresh costs several times one into memory it just freed.
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    os.rename(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)


def _commit(folder: int, journal: int, lines: list[bytes]) -> None:
    """The group's records: names durable first (the folder's fsync), then the records."""
    if SYNC:
        os.fsync(folder)
    view = memoryview(b"".join(lines))
    while view:
        view = view[os.write(journal, view) :]
    if SYNC:
        os.fsync(journal)


class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        out = Path(args.out)
        (out / "images").mkdir(parents=True, exist_ok=True)
        self.folder = os.open(out / "images", os.O_RDONLY | os.O_DIRECTORY)
        self.journal = os.open(out / "journal.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        self.url = f"{args.base_url.rstrip('/')}/v1beta/models/{args.model}:generateContent"
        self.headers = {"x-goog-api-key": os.environ.get("GEMINI_API_KEY", "k")}
        self.image_config = {"imageSize": args.image_size} if args.image_size else {}
        self.pending: list[bytes] = []
        self.waiters: list[asyncio.Future[None]] = []
        self.wake = asyncio.Event()
        self.failed = 0

    async def row(self, session: aiohttp.ClientSession, row_id: str, prompt: str) -> None:
        body = {
            "contents": [{"parts": [{"text": prompt}]}],
            "generationConfig": {
                "responseModalities": ["IMAGE"],
                "imageConfig": self.image_config,
            },
        }
        async with session.post(self.url, data=orjson.dumps(body), headers=self.headers) as r:
            raw = await r.read()
            status = r.status
        answer = orjson.loads(raw)
        parts = answer.get("candidates", [{}])[0].get("content", {}).get("parts", [])
        images = [p["inlineData"] for p in parts if "inlineData" in p and not p.get("thought")]
        if status != 200 or not images:
            self.failed += 1
            return
        data = pybase64.b64decode(images[0]["data"], validate=True)
        digest = hashlib.sha256(data).hexdigest()
        name = f"{row_id}.png"
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, _write_image, self.folder, name, data)
        done = loop.create_future()
        record = {"row_id": row_id, "file": name, "sha256": digest}
        self.pending.append(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        self.waiters.append(done)
        self.wake.set()
        await done

    async def committer(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.wake.wait()
            await asyncio.sleep(GROUP_S)
            self.wake.clear()
            lines, waiters = self.pending, self.waiters
            self.pending, self.waiters = [], []
            try:
                await loop.run_in_executor(None, _commit, self.folder, self.journal, lines)
            except OSError as e:
                for waiter in waiters:  # their rows fail; later groups still get their turn
                    waiter.set_exception(e)
                continue
            for waiter in waiters:
                waiter.set_result(None)


def _rows(manifest: Path) -> list[tuple[str, str]]:
    with open(manifest, newline="") as f:
        return [(r["id"], r["prompt"]) for r in csv.DictReader(f)]


async def main(args: argparse.Namespace) -> int:
    rows = _rows(args.manifest)
    client = Client(args)
    limit = asyncio.Semaphore(args.concurrency)
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        committer = asyncio.create_task(client.committer())

        async def one(row_id: str, prompt: str) -> None:
            async with limit:
                await client.row(session, row_id, prompt)

        await asyncio.gather(*(one(row_id, prompt) for row_id, prompt in rows))
        committer.cancel()
    print(f"{len(rows) - client.failed} images, {client.failed} failed", file=sys.stderr)
    return 1 if client.failed else 0


def _args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("manifest", type=Path, help="a CSV with id and prompt columns")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--image-size", default=None)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--no-fsync", action="store_true", help="skip the fsyncs (not durable)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    ARGS = _args()
    SYNC = not ARGS.no_fsync
    sys.exit(asyncio.run(main(ARGS)))
