"""AIMD concurrency: halve on overload (once per burst), creep back up on success."""

from __future__ import annotations

import anyio
import pytest

from pipeline.core.types import Outcome, OutcomeKind
from pipeline.run.online.adaptive import AdaptiveLimit, Holding


def test_overload_halves_and_successes_raise_back_to_the_cap() -> None:
    limit = AdaptiveLimit(16)
    limit.on_overload()
    assert limit.limit == 8
    for _ in range(2):  # every limit/4 successes add one
        limit.on_success()
    assert limit.limit == 9
    for _ in range(1000):
        limit.on_success()
    assert limit.limit == 16


def test_the_limit_never_drops_below_the_floor() -> None:
    limit = AdaptiveLimit(4, floor=2)
    for _ in range(10):
        limit.on_overload()
    assert limit.limit == 2


async def test_one_burst_of_overload_answers_counts_once() -> None:
    limit = AdaptiveLimit(8, floor=1)
    for _ in range(8):
        await limit.limiter.acquire()
    # All eight in-flight requests come back 503: one decrease, not eight.
    for _ in range(8):
        limit.limiter.release()
        limit.on_overload()
    assert limit.limit == 4
    limit.on_overload()  # a new signal after the burst drained
    assert limit.limit == 2


OVERLOADS = [
    Outcome(OutcomeKind.TRANSIENT, "SERVER_ERROR_503", 503),
    Outcome(OutcomeKind.TRANSIENT, "SERVER_ERROR_502", 502),
    Outcome(OutcomeKind.TRANSIENT, "SERVER_ERROR_504", 504),
    Outcome(OutcomeKind.TRANSIENT, "TIMEOUT"),
]


@pytest.mark.parametrize(("cap", "floor"), [(32, 8), (16, 4), (8, 4), (3, 3), (1, 1)])
def test_5xx_and_timeouts_never_take_the_limit_below_a_quarter_or_four(
    cap: int, floor: int
) -> None:
    limit = AdaptiveLimit(cap)
    for _ in range(50):
        for outcome in OVERLOADS:
            limit.on_answer(outcome)
    assert limit.limit == floor


def test_429s_leave_the_limit_to_the_rate_gate() -> None:
    limit = AdaptiveLimit(32)
    for _ in range(100):
        limit.on_answer(Outcome(OutcomeKind.RATE_LIMIT, "RATE_LIMITED", 429, retry_after_s=5))
    assert limit.limit == 32


def test_the_limit_recovers_from_its_floor_within_a_few_windows() -> None:
    limit = AdaptiveLimit(32)
    for _ in range(10):
        limit.on_answer(OVERLOADS[0])
    assert limit.limit == 8
    successes = 0
    while limit.limit < 32:
        limit.on_answer(Outcome(OutcomeKind.SUCCESS, "STOP", 200))
        successes += 1
    # Four windows of 32 requests at most, not the ~500 an increase per full window takes.
    assert successes <= 4 * 32


@pytest.mark.usefixtures("clock")  # its 30 s pass on a virtual clock
async def test_a_request_past_a_quarter_of_its_timeout_gives_its_slot_back() -> None:
    limit = AdaptiveLimit(4, floor=1)
    limit.on_overload()
    limit.on_overload()
    assert limit.limit == 1
    hung_in_flight = anyio.Event()

    async def hang() -> None:
        async with limit.slot(timeout_s=120):  # slow after 30 s
            hung_in_flight.set()
            await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        tg.start_soon(hang)
        await hung_in_flight.wait()
        with anyio.fail_after(60):  # not for ever: the hung request let its slot go
            async with limit.slot(timeout_s=60):
                assert limit.limit == 1  # the AIMD limit itself did not change
        tg.cancel_scope.cancel()
    assert limit.limiter.total_tokens == 1  # the slow request gave its extra slot back


async def test_a_held_slot_is_let_go_once_however_the_attempt_ends() -> None:
    """Taken by the sender, let go when the row loop leaves ``Holding``: after a failure, after
    a wait cancelled before the slot came (nothing taken, nothing given back), never twice."""
    limit = AdaptiveLimit(1, floor=1)
    taken: list[int] = []

    async def attempt_that_fails() -> None:
        with Holding() as held:
            await held.take(limit.slot(timeout_s=60))
            taken.append(limit.limiter.borrowed_tokens)
            raise RuntimeError("the attempt failed")

    with pytest.raises(RuntimeError):
        await attempt_that_fails()
    assert taken == [1]
    assert limit.limiter.borrowed_tokens == 0

    async with limit.slot(timeout_s=60):  # the pool's one slot, held elsewhere
        with anyio.move_on_after(0.01) as waited, Holding() as held:
            await held.take(limit.slot(timeout_s=60))
        assert waited.cancelled_caught
        assert limit.limiter.borrowed_tokens == 1  # the other holder's, untouched
    assert limit.limiter.borrowed_tokens == 0

    slot = limit.slot(timeout_s=60)
    await slot.take()
    slot.release()
    slot.release()  # a second release is nothing: the token went back once
    assert limit.limiter.borrowed_tokens == 0
