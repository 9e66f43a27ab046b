"""``FailAfter`` does what ``anyio.fail_after`` does, case by case, on the same clock."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from pipeline.core.clock import VirtualClock
from pipeline.core.deadline import FailAfter

Make = Callable[[float], AbstractContextManager[Any]]


class Boom(Exception):
    pass


async def outcome(make: Make, case: str) -> str:
    """What ``case`` comes to under a deadline made by ``make``."""
    try:
        if case == "outer cancel":
            with anyio.move_on_after(1) as outer:
                with make(5):
                    await anyio.sleep(3)
            return f"outer caught {outer.cancelled_caught}"
        if case == "shielded inner":
            with make(1):
                with anyio.CancelScope(shield=True):
                    await anyio.sleep(2)
                await anyio.lowlevel.checkpoint()
            return "finished"
        with make(1):
            if case == "in time":
                await anyio.sleep(0.5)
            elif case == "too late":
                await anyio.sleep(2)
            elif case == "raises":
                raise Boom
            elif case == "raises after the deadline":
                with anyio.CancelScope(shield=True):
                    await anyio.sleep(2)
                raise Boom
        return "finished"
    except TimeoutError:
        return "timeout"
    except Boom:
        return "boom"


@pytest.mark.parametrize(
    "case",
    ["in time", "too late", "raises", "raises after the deadline", "outer cancel",
     "shielded inner"],
)  # fmt: skip
async def test_fail_after_as_anyio_does_it(clock: VirtualClock, case: str) -> None:
    started = clock.monotonic()
    theirs = await outcome(anyio.fail_after, case)
    took = clock.monotonic() - started
    started = clock.monotonic()
    ours = await outcome(FailAfter, case)
    assert (ours, clock.monotonic() - started) == (theirs, took)
    assert (
        theirs
        == {
            "in time": "finished",
            "too late": "timeout",
            "raises": "boom",
            "raises after the deadline": "boom",
            "outer cancel": "outer caught True",
            "shielded inner": "timeout",
        }[case]
    )
