"""Measure how many generateContent responses per second one emulator process serves.

The emulator runs in a child process on a loopback port (``serve``, as ``nanobatch emulator``
does, one process); this process is the load generator, with ``--concurrency`` requests in
flight, each with a unique prompt (so the image cache never helps) unless ``--repeat``.

Two load generators: ``--client httpx`` (an httpx.AsyncClient, what a real client pays to read
multi-megabyte bodies) and ``--client raw`` (keep-alive sockets that read Content-Length bytes
and nothing more, so the emulator, not the client, is the bottleneck). The emulator's CPU time
per response is read from /proc either way.

    uv run python scripts/emulator_throughput.py --client raw --requests 3000

With ``--latency 0.25 --image-size 512 --concurrency 64`` it is bench scenario 1's setting
served to a client that does nothing but read bytes: the most any client can reach here.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from multiprocessing.connection import Connection
from urllib.parse import urlsplit

import anyio
import anyio.abc
import httpx

from pipeline.emulator import EmulatorConfig, Payload, parse_latency, serve


def _serve(payload: str, latency: str, conn: Connection) -> None:
    config = EmulatorConfig(payload=Payload(payload), latency=parse_latency(latency))
    serve(config, "127.0.0.1", 0, on_ready=conn.send)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _body(args: argparse.Namespace, i: int) -> bytes:
    prompt = "a lighthouse at dusk" if args.repeat else f"a lighthouse at dusk, take {i}"
    request = {
        "contents": [{"parts": [{"text": prompt}]}],
        "generationConfig": {"imageConfig": {"aspectRatio": "1:1", "imageSize": args.image_size}},
    }
    return json.dumps(request).encode()


async def _raw_request(stream: anyio.abc.ByteStream, head: bytes, body: bytes) -> int:
    """One keep-alive HTTP/1.1 exchange; returns the response body's length."""
    await stream.send(head + str(len(body)).encode() + b"\r\n\r\n" + body)
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        buffer += await stream.receive()
    header, _, rest = buffer.partition(b"\r\n\r\n")
    if not header.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(header.decode("latin-1"))
    length = next(
        int(line.split(b":", 1)[1])
        for line in header.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    received = len(rest)
    while received < length:
        received += len(await stream.receive(1 << 20))
    return length


async def load(base_url: str, args: argparse.Namespace, count: int) -> tuple[float, int]:
    """Send ``count`` requests, ``args.concurrency`` at a time: (seconds, body bytes received)."""
    path = f"/v1beta/models/{args.model}:generateContent"
    url = urlsplit(base_url)
    head = (
        f"POST {path} HTTP/1.1\r\nhost: {url.netloc}\r\nx-goog-api-key: k\r\n"
        "content-type: application/json\r\ncontent-length: "
    ).encode()
    received = 0
    limits = httpx.Limits(max_connections=args.concurrency)
    send, receive = anyio.create_memory_object_stream[int](args.concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:

        async def worker() -> None:
            nonlocal received
            stream = None
            if args.client == "raw":
                stream = await anyio.connect_tcp(url.hostname or "127.0.0.1", url.port or 80)
            async with receive.clone() as jobs:
                async for i in jobs:
                    body = _body(args, i)
                    if stream is not None:
                        # Await first: "received += await ..." would read received before.
                        length = await _raw_request(stream, head, body)
                        received += length
                    else:
                        headers = {"x-goog-api-key": "k", "content-type": "application/json"}
                        response = await client.post(path, content=body, headers=headers)
                        response.raise_for_status()
                        received += len(response.content)
            if stream is not None:
                await stream.aclose()

        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for _ in range(args.concurrency):
                group.start_soon(worker)
            async with send:
                for i in range(count):
                    await send.send(i)
            receive.close()
        return time.perf_counter() - started, received


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--model", default="gemini-3.1-flash-image-preview")
    parser.add_argument("--payload", choices=[p.value for p in Payload], default="realistic")
    parser.add_argument("--client", choices=["httpx", "raw"], default="httpx")
    parser.add_argument("--repeat", action="store_true", help="send the same prompt every time")
    parser.add_argument("--latency", default="0", help="the emulator's --latency")
    parser.add_argument("--image-size", default="1K", choices=["512", "1K", "2K", "4K"])
    args = parser.parse_args()

    parent, child = multiprocessing.Pipe()
    context = multiprocessing.get_context("spawn")
    server = context.Process(target=_serve, args=(args.payload, args.latency, child), daemon=True)
    server.start()
    base_url = parent.recv()
    assert server.pid is not None
    try:
        anyio.run(load, base_url, args, 100)  # warm up: layouts, connections
        cpu_before = _cpu_seconds(server.pid)
        client_before = time.process_time()
        elapsed, received = anyio.run(load, base_url, args, args.requests)
        client_cpu = time.process_time() - client_before
        cpu = _cpu_seconds(server.pid) - cpu_before
    finally:
        server.terminate()
        server.join()
    prompts = "same prompt" if args.repeat else "unique prompts"
    print(
        f"{args.requests} x {args.model} {args.image_size} 1:1, payload={args.payload}, "
        f"client={args.client}, concurrency={args.concurrency}, latency {args.latency}, {prompts}"
    )
    mb = received / 1e6
    print(
        f"  {args.requests / elapsed:.0f} responses/s, {mb / elapsed:.0f} MB/s, "
        f"{mb / args.requests:.2f} MB per response"
    )
    if args.latency != "0":
        limit = args.concurrency / float(args.latency)
        print(f"  {args.requests / elapsed / limit:.3f} of concurrency / latency ({limit:.0f}/s)")
    print(
        f"  emulator CPU {cpu / args.requests * 1000:.2f} ms per response "
        f"(~{args.requests / cpu:.0f} responses/s per fully used core)"
    )
    # The load generator's own CPU: what receiving an answer costs a client that does nothing
    # else with it (no JSON, no image, no file), the HTTP part of a real client's CPU.
    print(f"  client CPU {client_cpu / args.requests * 1000:.2f} ms per response ({args.client})")


if __name__ == "__main__":
    main()
