"""The virtual clock: time jumps to the earliest waiter when everything waits, and never while
a worker thread is busy; the wall clock follows it."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import anyio
import pytest

from pipeline.core.clock import SYSTEM_CLOCK, VirtualClock


async def test_many_sleepers_wake_in_order_at_their_own_times(clock: VirtualClock) -> None:
    start = clock.monotonic()
    woke: list[tuple[float, float]] = []

    async def sleeper(seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((seconds, clock.monotonic() - start))

    async with anyio.create_task_group() as group:
        for seconds in (5.0, 1.0, 3600.0, 3.0, 0.5, 3.0):
            group.start_soon(sleeper, seconds)

    assert woke == sorted(woke)
    assert all(elapsed == pytest.approx(seconds) for seconds, elapsed in woke)


async def test_anyio_deadlines_run_on_the_same_time(clock: VirtualClock) -> None:
    start = clock.monotonic()
    with anyio.move_on_after(120) as scope:
        await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert clock.monotonic() - start == pytest.approx(120)
    assert anyio.current_time() == clock.monotonic()


async def test_work_in_a_thread_takes_no_virtual_time(clock: VirtualClock) -> None:
    start = clock.monotonic()
    with anyio.move_on_after(1) as scope:  # a timer that must not fire during the thread's work
        await anyio.to_thread.run_sync(time.sleep, 0.05)
    assert not scope.cancelled_caught
    assert clock.monotonic() == start


def test_the_wall_clock_moves_with_the_monotonic_one_across_runs() -> None:
    clock = VirtualClock(wall=datetime(2030, 1, 1, tzinfo=UTC))
    clock.run(clock.sleep, 90)
    clock.run(clock.sleep, 30)
    assert clock.now() == datetime(2030, 1, 1, 0, 2, tzinfo=UTC)


def test_a_virtual_clock_refuses_to_sleep_on_a_real_loop() -> None:
    with pytest.raises(RuntimeError, match="own loop"):
        SYSTEM_CLOCK.run(VirtualClock().sleep, 1)
