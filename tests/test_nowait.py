"""``core.nowait``: anyio's send, receive and acquire without a pass through the event loop
when they need not wait, and anyio's own waiting (and order) when they must."""

from __future__ import annotations

import anyio
import pytest

from pipeline.core import nowait


async def test_with_room_nothing_else_runs_in_between() -> None:
    """anyio's ``send``/``receive``/``acquire`` each let every other ready task run first; these
    do not, so a request slot is not held through a pass of a busy event loop."""
    ran: list[str] = []
    send, receive = anyio.create_memory_object_stream[int](1)
    limiter = anyio.CapacityLimiter(1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: _note(ran, "other"))
        await nowait.send(send, 1)
        assert await nowait.receive(receive) == 1
        await nowait.acquire(limiter)
        ran.append("all three")
        limiter.release()
    assert ran == ["all three", "other"]


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


async def test_a_free_token_does_not_jump_the_queue() -> None:
    """A task that finds a token free while another already waits for one waits its turn."""
    limiter = anyio.CapacityLimiter(1)
    order: list[str] = []

    async def holder(name: str) -> None:
        await nowait.acquire(limiter)
        order.append(name)
        await anyio.sleep(0.01)
        limiter.release()

    async with anyio.create_task_group() as tg:
        await nowait.acquire(limiter)  # held by this task
        tg.start_soon(holder, "waiting first")
        await anyio.wait_all_tasks_blocked()
        limiter.release()  # hands the token to the waiter
        await nowait.acquire(limiter)  # must wait for it, not take it
        order.append("came later")
        limiter.release()
    assert order == ["waiting first", "came later"]
