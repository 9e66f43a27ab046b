"""AIMD concurrency: halve on overload (once per burst), creep back up on success."""

from __future__ import annotations

from pipeline.adaptive import AdaptiveLimit


def test_overload_halves_and_successes_raise_back_to_the_cap() -> None:
    limit = AdaptiveLimit(16)
    limit.on_overload()
    assert limit.limit == 8
    for _ in range(8):
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
    limit = AdaptiveLimit(8)
    held = []
    for _ in range(8):
        token = object()
        await limit.limiter.acquire_on_behalf_of(token)
        held.append(token)
    # All eight in-flight requests come back 429: one decrease, not eight.
    for token in held:
        limit.limiter.release_on_behalf_of(token)
        limit.on_overload()
    assert limit.limit == 4
    limit.on_overload()  # a new signal after the burst drained
    assert limit.limit == 2
