"""The rpm window and the counters: billing, duplicates, early retries, statuses, reset."""

from __future__ import annotations

from typing import Any

import anyio

from pipeline.emulator import parse_faults, parse_latency
from tests.emulator.emulator_helpers import (
    FLASH_25,
    PRO_3,
    BlockingSleep,
    FakeClock,
    body,
    config,
    emulator,
    generate,
)


def _retry_delay(answer: dict[str, Any]) -> str:
    details = answer["error"]["details"]
    delay: str = next(d for d in details if d["@type"].endswith("RetryInfo"))["retryDelay"]
    return delay


async def test_rpm_admits_n_per_minute_then_says_when_a_slot_frees() -> None:
    clock = FakeClock()
    async with emulator(config(rpm=3, clock=clock)) as (client, app):
        for i in range(3):
            assert (await generate(client, body(f"p{i}"))).status_code == 200
            clock.advance(10)
        refused = await generate(client, body("p3"))
        assert refused.status_code == 429
        # The first admission (t=0) leaves the window at t=60; it is now t=30.
        assert _retry_delay(refused.json()) == "30s"
        (violation,) = next(
            d for d in refused.json()["error"]["details"] if d["@type"].endswith("QuotaFailure")
        )["violations"]
        assert violation["quotaValue"] == "3"
        assert "PerMinute" in violation["quotaId"]
        clock.advance(29.5)
        assert (await generate(client, body("p3"))).status_code == 429
        clock.advance(0.5)
        assert (await generate(client, body("p3"))).status_code == 200
    stats = app.stats_snapshot()
    assert stats["rate_limited"] == 2
    assert stats["by_status"] == {"200": 4, "429": 2}


async def test_rpm_retry_delay_is_rounded_up_to_whole_seconds() -> None:
    clock = FakeClock()
    async with emulator(config(rpm=1, clock=clock)) as (client, _):
        await generate(client, body("a"))
        clock.advance(0.4)
        refused = await generate(client, body("b"))
    assert _retry_delay(refused.json()) == "60s"
    assert "Please retry in 59.6" in refused.json()["error"]["message"]


async def test_rpm_refusals_do_not_use_up_the_window() -> None:
    clock = FakeClock()
    async with emulator(config(rpm=2, clock=clock)) as (client, _):
        await generate(client, body("a"))
        clock.advance(30)
        await generate(client, body("b"))
        for _ in range(5):
            assert (await generate(client, body("c"))).status_code == 429
        clock.advance(30)  # "a" leaves the window; the five refusals never entered it
        assert (await generate(client, body("c"))).status_code == 200


async def test_rpm_is_counted_per_model() -> None:
    clock = FakeClock()
    async with emulator(config(rpm=1, clock=clock)) as (client, _):
        assert (await generate(client, body("a"), model=FLASH_25)).status_code == 200
        assert (await generate(client, body("a"), model=PRO_3)).status_code == 200
        assert (await generate(client, body("b"), model=PRO_3)).status_code == 429


async def test_invalid_requests_do_not_count_against_rpm() -> None:
    clock = FakeClock()
    async with emulator(config(rpm=1, clock=clock)) as (client, _):
        assert (await generate(client, body(size="1024x1024"))).status_code == 400
        assert (await generate(client, body())).status_code == 200


async def test_billing_counts_successes_only_and_duplicates() -> None:
    async with emulator() as (client, app):
        for prompt in ["a", "b", "a", "a", "#unsafe", "#503", "#429", "#truncate"]:
            await generate(client, body(prompt))
        await generate(client, body(size="1"))
    stats = app.stats_snapshot()
    assert stats["billed"] == 4
    assert stats["distinct_billed"] == 2
    assert stats["billed_duplicates"] == 2
    assert stats["refused"] == 1
    assert stats["requests"] == 9
    assert stats["by_status"] == {"200": 6, "400": 1, "429": 1, "503": 1}


async def test_same_prompt_different_settings_is_not_a_duplicate() -> None:
    async with emulator() as (client, app):
        await generate(client, body("a", aspect_ratio="1:1"))
        await generate(client, body("a", aspect_ratio="16:9"))
        await generate(client, body("a"), model="gemini-3-pro-image-preview")
    assert app.stats_snapshot()["billed_duplicates"] == 0


async def test_a_client_that_gives_up_mid_generation_is_still_billed() -> None:
    sleep = BlockingSleep()
    slow = config(sleep=sleep, latency=parse_latency("30"))
    async with emulator(slow) as (client, app), anyio.create_task_group() as group:
        group.start_soon(generate, client, body("slow"))
        await sleep.entered.wait()
        group.cancel_scope.cancel()
    stats = app.stats_snapshot()
    assert stats["billed"] == 1
    assert stats["by_status"] == {"disconnected": 1}


async def test_early_retries_are_counted_against_the_retry_delay() -> None:
    clock = FakeClock()
    faults = parse_faults("retry_delay=10")
    async with emulator(config(clock=clock, faults=faults)) as (client, app):
        assert (await generate(client, body("#429x1 cat"))).status_code == 429
        clock.advance(4)
        await generate(client, body("#429x1 cat"))  # early
        clock.advance(5.995)  # 9.995 s after the 429: within the 10 ms slack
        await generate(client, body("#429x1 cat"))
        await generate(client, body("another prompt"))  # never told to wait
    assert app.stats_snapshot()["early_retries"] == 1


async def test_every_early_retry_counts_until_one_is_on_time() -> None:
    clock = FakeClock()
    async with emulator(config(clock=clock, faults=parse_faults("retry_delay=10"))) as (
        client,
        app,
    ):
        await generate(client, body("#429x1 cat"))
        for _ in range(3):
            clock.advance(1)
            await generate(client, body("#429x1 cat"))
        clock.advance(20)
        await generate(client, body("#429x1 cat"))
    assert app.stats_snapshot()["early_retries"] == 3


async def test_rpm_429_also_sets_the_retry_deadline() -> None:
    clock = FakeClock()
    async with emulator(config(rpm=1, clock=clock)) as (client, app):
        await generate(client, body("a"))
        await generate(client, body("b"))  # 429, retry in 60 s
        clock.advance(1)
        await generate(client, body("b"))  # early (and refused again)
    assert app.stats_snapshot()["early_retries"] == 1


async def test_stats_and_reset_endpoints() -> None:
    async with emulator() as (client, app):
        await generate(client, body("a"))
        await generate(client, body("a"))
        stats = (await client.get("/_emulator/stats")).json()
        assert stats == app.stats_snapshot()
        assert stats["billed_duplicates"] == 1
        assert set(stats) >= {
            "requests",
            "by_status",
            "billed",
            "billed_duplicates",
            "early_retries",
            "refused",
        }
        zeroed = (await client.post("/_emulator/reset")).json()
        assert zeroed["requests"] == 0
        assert zeroed["billed"] == 0
        assert zeroed["by_status"] == {}
        await generate(client, body("a"))
        assert app.stats_snapshot()["billed_duplicates"] == 0
        assert (await client.get("/_emulator/nothing")).status_code == 404


async def test_reset_stats_restarts_the_fault_sequence() -> None:
    async with emulator(config(faults=parse_faults("429=0.5"), seed=4)) as (client, app):
        first = [(await generate(client, body("same"))).status_code for _ in range(12)]
        app.reset_stats()
        again = [(await generate(client, body("same"))).status_code for _ in range(12)]
    assert first == again
    assert set(first) == {200, 429}
