"""``core.nowait``: anyio's send and receive without a pass through the event loop
when they need not wait, and anyio's own waiting (and order) when they must."""

from __future__ import annotations

import anyio
import pytest

from pipeline.core import nowait


async def test_with_room_nothing_else_runs_in_between() -> None:
    """anyio's ``send``/``receive`` each let every other ready task run first; these do not."""
    ran: list[str] = []
    send, receive = anyio.create_memory_object_stream[int](1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: _note(ran, "other"))
        await nowait.send(send, 1)
        assert await nowait.receive(receive) == 1
        ran.append("both")
    assert ran == ["both", "other"]


async def _note(ran: list[str], what: str) -> None:
    ran.append(what)


async def test_without_room_they_wait_as_anyio_does() -> None:
    send, receive = anyio.create_memory_object_stream[int](0)
    got: list[int] = []

    async def take() -> None:
        got.append(await nowait.receive(receive))

    async with anyio.create_task_group() as tg:
        tg.start_soon(take)
        await nowait.send(send, 7)  # no buffer: waits for the receiver
    assert got == [7]
    send.close()
    with pytest.raises(anyio.EndOfStream):
        await nowait.receive(receive)
