"""The HTTP stacks' own cost, apart from the rest of the client: CPU per answer received through
``HttpClient.send`` on each stack of ``http_stacks.py``, from a server that only replays one real
emulator answer per size (``floor.py``'s), in a process of its own.

    uv run python scripts/bench_receive.py [--rounds 5] [--sizes 512,1K,4K]

The reader throws the body away, so what is measured is the stack: the request written, the
answer parsed and its body carried to the reader in chunks. Each round measures every stack
back to back (rotating order); the table gives, per size, the median CPU per answer over rounds
with its spread, and the median of the per-round ratios to httpx.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import floor
import http_stacks

from pipeline.core.types import Outcome, OutcomeKind
from pipeline.providers.auth import Credentials
from pipeline.providers.base import PreparedRequest
from pipeline.providers.http import HttpClient

REQUESTS = {"512": 1500, "1K": 400, "4K": 30}  # ~2 s of CPU each on this machine
CONCURRENCY = 16
BODY = b'{"contents":[{"parts":[{"text":"a lighthouse at dusk"}]}]}'


async def _serve(port_file: Path, body: bytes) -> None:
    """Answer every request on every keep-alive connection with the same bytes."""
    head = (
        f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    reply = head.encode() + body

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    await anyio.Path(port_file).write_text(str(port))
    async with server:
        await server.serve_forever()


class Discard:
    """An ``AnswerReader`` that only counts what it is fed."""

    def __init__(self) -> None:
        self.received = 0

    def begin(self, status: int, headers: Mapping[str, str]) -> None:
        assert status == 200

    def feed(self, chunk: bytes) -> None:
        self.received += len(chunk)

    def finish(self) -> Outcome:
        return Outcome(OutcomeKind.SUCCESS, "STOP")

    def abort(self) -> None:
        raise AssertionError("an answer broke off")


def _pool(stack: str) -> Any:
    """``ClientPool`` for ``stack``, or an equivalent with ``for_worker`` and ``async with``."""
    if stack == "aiohttp":
        return http_stacks._aiohttp_pool()
    if stack == "httpx2":
        return _httpx2_pool
    return _httpx_pool(stack)


class _OneClient(http_stacks.OneClient):
    """One ``HttpClient`` on one httpx-like client (``_http``), both made by the subclass."""

    _http: Any

    async def close(self) -> None:
        await self._http.aclose()


def _httpx_pool(stack: str) -> Any:
    import httpx
    import httpx_aiohttp

    from pipeline.providers.aiotransport import AiohttpTransport

    class Pool(_OneClient):
        def __init__(self, _: object, workers: int) -> None:
            limits = httpx.Limits(max_connections=workers, keepalive_expiry=4.0)
            transport: httpx.AsyncBaseTransport
            if stack == "httpx-aiohttp":
                transport = httpx_aiohttp.AiohttpTransport(limits=limits)
            elif stack == "aiotransport":
                transport = AiohttpTransport(workers, httpx.create_ssl_context(), 4.0)
            else:
                transport = httpx.AsyncHTTPTransport(limits=limits)
            self._http = httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(None))
            self._client = HttpClient(self._http)

    return Pool


class _httpx2_pool(_OneClient):
    def __init__(self, _: object, workers: int) -> None:
        import httpx2

        limits = httpx2.Limits(max_connections=workers, keepalive_expiry=4.0)
        transport = httpx2.AsyncHTTPTransport(limits=limits)
        self._http = httpx2.AsyncClient(transport=transport, timeout=httpx2.Timeout(None))
        self._client = HttpClient(self._http)  # httpx2 has the same API (``_http`` is Any)


async def _measure(stack: str, url: str, requests: int, size: int) -> float:
    """CPU seconds of this process per answer, ``requests`` answers at ``CONCURRENCY``."""
    request = PreparedRequest("m", url, BODY, "f", 60.0, len(BODY))
    left = iter(range(requests))
    async with _pool(stack)(None, CONCURRENCY) as pool:
        client = pool.for_worker(0)

        async def worker() -> None:
            for _ in left:
                reader = Discard()
                outcome = await client.send(request, Credentials(), reader)
                assert isinstance(outcome, Outcome), outcome
                assert reader.received == size

        await worker()  # one connection made and one answer read before the clock starts
        left = iter(range(requests))
        started = time.process_time()
        async with anyio.create_task_group() as tg:
            for _ in range(CONCURRENCY):
                tg.start_soon(worker)
        return (time.process_time() - started) / requests


def _band(values: list[float], digits: int) -> str:
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{mid:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", default="512,1K,4K")
    parser.add_argument("--stacks", default=",".join(http_stacks.STACKS))
    parser.add_argument("--serve", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        port_file, answer = args.serve
        asyncio.run(_serve(port_file, answer.read_bytes()))
        return 0
    stacks, sizes = args.stacks.split(","), args.sizes.split(",")
    answers = asyncio.run(floor._answers(sizes))
    lines = ["| size | answer | " + " | ".join(stacks) + " |", "|---|---|" + "---|" * len(stacks)]
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            answer, port_file = Path(tmp) / "answer", Path(tmp) / "port"
            answer.write_bytes(answers[size])
            server = subprocess.Popen(
                [sys.executable, __file__, "--serve", str(port_file), str(answer)]
            )
            try:
                while not port_file.exists() or not port_file.read_text():
                    time.sleep(0.05)
                url = f"http://127.0.0.1:{port_file.read_text()}/v1beta/models/m:generateContent"
                per: dict[str, list[float]] = {s: [] for s in stacks}
                for r in range(args.rounds):
                    for stack in stacks[r % len(stacks) :] + stacks[: r % len(stacks)]:
                        cpu = anyio.run(_measure, stack, url, REQUESTS[size], len(answers[size]))
                        per[stack].append(cpu)
                        print(f"{size} {stack}: {1000 * cpu:.2f} ms", file=sys.stderr)
            finally:
                server.terminate()
                server.wait()
        cells = []
        for stack in stacks:
            cell = _band([1000 * v for v in per[stack]], 2) + " ms"
            if stack != "httpx" and "httpx" in per:
                ratios = [a / b for a, b in zip(per[stack], per["httpx"], strict=True)]
                cell += f"; {_band(ratios, 2)}x"
            cells.append(cell)
        mb = len(answers[size]) / 1e6
        lines.append(f"| {size} | {mb:.2f} MB | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
