"""anyio's stream sends and receives, without a pass through the event loop when they need not
wait (request slots: ``core.slots``).

Each of anyio's begins with a checkpoint (a ``sleep(0)``), or ends with one: even when the
item is there, the task goes once round the event loop. These take the item at once when they
can and fall back on anyio's own wait when they cannot; when they do not wait they are not a
cancellation point (the task's next real wait is).
"""

from __future__ import annotations

from typing import TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

T = TypeVar("T")


async def send(stream: MemoryObjectSendStream[T], item: T) -> None:
    """``stream.send(item)``: at once when the buffer has room or a receiver waits."""
    try:
        stream.send_nowait(item)
    except anyio.WouldBlock:
        await stream.send(item)


async def receive(stream: MemoryObjectReceiveStream[T]) -> T:
    """``stream.receive()``: at once when an item is waiting. Raises ``anyio.EndOfStream``
    when every sender closed and nothing is left."""
    try:
        return stream.receive_nowait()
    except anyio.WouldBlock:
        return await stream.receive()
