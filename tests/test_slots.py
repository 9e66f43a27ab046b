"""``core.slots``: request slots and body readers, first come first served, with no token lost
or made up when a waiter is cancelled at any point."""

from __future__ import annotations

import asyncio

import anyio
import anyio.lowlevel
import pytest

from pipeline.core.slots import Slots


async def _note(ran: list[str], what: str) -> None:
    ran.append(what)


async def test_a_free_token_is_taken_at_once_with_nothing_run_in_between() -> None:
    """A slot is not held through a pass of a busy event loop."""
    slots = Slots(1)
    ran: list[str] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(_note, ran, "other")
        await slots.acquire()
        ran.append("acquired")
        slots.release()
    assert ran == ["acquired", "other"]


async def test_waiters_are_served_in_the_order_they_came() -> None:
    slots = Slots(1)
    order: list[int] = []

    async def take(n: int) -> None:
        await slots.acquire()
        order.append(n)
        await anyio.lowlevel.checkpoint()
        slots.release()

    await slots.acquire()
    async with anyio.create_task_group() as tg:
        for n in range(5):
            tg.start_soon(take, n)
            await anyio.wait_all_tasks_blocked()
        slots.release()
    assert order == [0, 1, 2, 3, 4]
    assert slots.borrowed_tokens == 0


async def test_a_free_token_does_not_jump_the_queue() -> None:
    """A task that finds a token free while another already waits for one waits its turn."""
    slots = Slots(1)
    order: list[str] = []

    async def holder(name: str) -> None:
        await slots.acquire()
        order.append(name)
        await anyio.sleep(0.01)
        slots.release()

    async with anyio.create_task_group() as tg:
        await slots.acquire()  # held by this task
        tg.start_soon(holder, "waiting first")
        await anyio.wait_all_tasks_blocked()
        slots.release()  # hands the token to the waiter
        assert slots.borrowed_tokens == 1  # the waiter's now, not free for the taking
        await slots.acquire()  # must wait for it, not take it
        order.append("came later")
        slots.release()
    assert order == ["waiting first", "came later"]


async def test_a_waiter_cancelled_before_its_turn_leaves_the_queue() -> None:
    slots = Slots(1)
    await slots.acquire()
    with anyio.move_on_after(0.01) as scope:
        await slots.acquire()
    assert scope.cancelled_caught
    slots.release()
    assert slots.borrowed_tokens == 0
    with anyio.fail_after(1):  # nobody left waiting: taken at once, not after a stale waiter
        await slots.acquire()
    assert slots.borrowed_tokens == 1


async def test_a_waiter_cancelled_after_it_was_handed_a_token_gives_it_back() -> None:
    """Handed the token by a release, cancelled before it ran: the token is not lost. (anyio
    holds its cancellation back while the task's wait is done; asyncio's does not.)"""
    slots = Slots(1)
    got: list[str] = []

    async def wait_for_it() -> None:
        await slots.acquire()
        got.append("ran")  # never: cancelled before it resumed

    await slots.acquire()
    task = asyncio.get_running_loop().create_task(wait_for_it())
    await anyio.wait_all_tasks_blocked()
    slots.release()  # handed on to the waiter...
    assert slots.borrowed_tokens == 1
    task.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await task
    assert got == []
    assert slots.borrowed_tokens == 0


async def test_cancelled_waiters_passed_over_by_a_release_are_not_counted() -> None:
    slots = Slots(1)
    served: list[int] = []

    async def take(n: int) -> None:
        await slots.acquire()
        served.append(n)
        slots.release()

    await slots.acquire()
    async with anyio.create_task_group() as outer, anyio.create_task_group() as doomed:
        doomed.start_soon(take, 0)
        await anyio.wait_all_tasks_blocked()
        outer.start_soon(take, 1)
        await anyio.wait_all_tasks_blocked()
        doomed.cancel_scope.cancel()
        slots.release()  # the first waiter is cancelled: the token goes to the second
    assert served == [1]
    assert slots.borrowed_tokens == 0


async def test_more_tokens_go_to_waiters_at_once_and_fewer_take_none_back() -> None:
    slots = Slots(1)
    served: list[int] = []

    async def take(n: int) -> None:
        await slots.acquire()
        served.append(n)

    await slots.acquire()
    async with anyio.create_task_group() as tg:
        for n in range(3):
            tg.start_soon(take, n)
        await anyio.wait_all_tasks_blocked()
        slots.total_tokens = 3  # two more: the first two waiters
        await anyio.wait_all_tasks_blocked()
        assert served == [0, 1]
        slots.total_tokens = 1  # three held: none taken back, nobody new gets one
        slots.release()
        slots.release()
        await anyio.wait_all_tasks_blocked()
        assert served == [0, 1]
        slots.release()  # now below one held: the last waiter's turn
    assert served == [0, 1, 2]
    assert slots.borrowed_tokens == 1


def test_a_release_without_a_token_is_a_bug_not_a_free_slot() -> None:
    with pytest.raises(RuntimeError):
        Slots(2).release()
