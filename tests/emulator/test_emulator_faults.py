"""Injected faults: each kind looks like the real thing, and the draws are seeded."""

from __future__ import annotations

import hashlib
import json
import statistics
from typing import Any

import anyio
import httpx
import pytest

from pipeline.emulator import EmulatorConfig, parse_faults, parse_latency
from pipeline.emulator.faults import latency_s
from tests.emulator.emulator_helpers import (
    BlockingSleep,
    RecordingSleep,
    body,
    config,
    emulator,
    generate,
    image_parts,
)

ISSUE_FAULTS = (
    "429=0.2,500=0.05,503=0.05,504=0.01,reset=0.02,truncate=0.02,hang=0.01,block=0.01,unsafe=0.02"
)


def _details(response: httpx.Response) -> dict[str, dict[str, Any]]:
    return {d["@type"].rsplit(".", 1)[1]: d for d in response.json()["error"]["details"]}


async def test_429_has_quota_failure_help_and_retry_info() -> None:
    async with emulator(config(faults=parse_faults("retry_delay=7"))) as (client, app):
        response = await generate(client, body("#429 a cat"))
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED"
    assert "You exceeded your current quota" in error["message"]
    details = _details(response)
    assert details["RetryInfo"]["retryDelay"] == "7s"
    (violation,) = details["QuotaFailure"]["violations"]
    assert "PerMinute" in violation["quotaId"]
    assert "Help" in details
    assert app.stats_snapshot()["billed"] == 0


async def test_per_day_429_says_per_day() -> None:
    async with emulator() as (client, _):
        response = await generate(client, body("#429day"))
    assert response.status_code == 429
    (violation,) = _details(response)["QuotaFailure"]["violations"]
    assert "PerDay" in violation["quotaId"]


async def test_fractional_retry_delay_is_a_protobuf_duration() -> None:
    async with emulator(config(faults=parse_faults("retry_delay=0.25"))) as (client, _):
        response = await generate(client, body("#429"))
    assert _details(response)["RetryInfo"]["retryDelay"] == "0.25s"


@pytest.mark.parametrize(
    ("token", "code", "status", "message"),
    [
        ("#500", 500, "INTERNAL", "An internal error has occurred."),
        ("#503", 503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
        ("#504", 504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
    ],
)
async def test_server_errors(token: str, code: int, status: str, message: str) -> None:
    async with emulator() as (client, app):
        response = await generate(client, body(token))
    assert response.status_code == code
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (code, status)
    assert error["message"].startswith(message)
    stats = app.stats_snapshot()
    assert stats["by_status"] == {str(code): 1}
    assert stats["billed"] == 0


async def test_reset_breaks_the_connection_mid_response() -> None:
    async with emulator() as (client, app):
        with pytest.raises(httpx.RemoteProtocolError):
            await generate(client, body("#reset"))
    stats = app.stats_snapshot()
    assert stats["by_status"] == {"reset": 1}
    assert stats["billed"] == 0


async def test_truncate_sends_a_200_cut_mid_json() -> None:
    async with emulator() as (client, app):
        response = await generate(client, body("#truncate"))
    assert response.status_code == 200
    assert response.content.startswith(b'{"candidates"')
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
    assert app.stats_snapshot()["billed"] == 0


async def test_hang_outlasts_the_client_and_is_still_billed() -> None:
    sleep = BlockingSleep()
    async with emulator(config(sleep=sleep)) as (client, app):
        with anyio.move_on_after(5) as deadline:  # a safety net: cancelled as soon as it hangs
            async with anyio.create_task_group() as group:
                group.start_soon(generate, client, body("#hang"))
                await sleep.entered.wait()
                group.cancel_scope.cancel()
        assert not deadline.cancelled_caught
    stats = app.stats_snapshot()
    assert stats["billed"] == 1
    assert stats["by_status"] == {"disconnected": 1}
    assert stats["in_flight"] == 0


async def test_hang_answers_after_hang_s_if_the_client_waits() -> None:
    sleep = RecordingSleep()
    async with emulator(config(sleep=sleep, faults=parse_faults("hang_s=600"))) as (client, _):
        response = await generate(client, body("#hang"))
    assert response.status_code == 200
    assert sleep.calls == [600.0]
    assert image_parts(response.json())


async def test_in_process_read_timeout_is_a_read_timeout() -> None:
    async with emulator(config(faults=parse_faults("hang_s=30"))) as (client, app):
        with pytest.raises(httpx.ReadTimeout):
            await client.post(
                "/v1beta/models/gemini-3.1-flash-image-preview:generateContent",
                json=body("#hang"),
                headers={"x-goog-api-key": "k"},
                timeout=0.01,
            )
    assert app.stats_snapshot()["billed"] == 1


async def test_transient_token_with_limit_fails_then_succeeds() -> None:
    async with emulator() as (client, app):
        statuses = [
            (await generate(client, body("#503x2 a lighthouse"))).status_code for _ in range(3)
        ]
    assert statuses == [503, 503, 200]
    stats = app.stats_snapshot()
    assert stats["billed"] == 1
    assert stats["faults"] == {"503": 2}


async def _statuses(emulator_config: EmulatorConfig, prompts: list[str]) -> list[str]:
    """Each request's outcome: a status code, or 'reset' / 'hang' for the socket-level faults.

    Small (512) images keep these many-request tests fast.
    """
    outcomes = []
    async with emulator(emulator_config) as (client, _):
        for prompt in prompts:
            try:
                with anyio.fail_after(1):
                    response = await generate(client, body(prompt, image_size="512"))
            except httpx.RemoteProtocolError:
                outcomes.append("reset")
                continue
            except TimeoutError:
                outcomes.append("hang")
                continue
            answer = response.content
            if (
                response.status_code == 200
                and b"candidates" in answer[:20]
                and not answer.endswith(b"}")
            ):
                outcomes.append("truncated")
            elif response.status_code == 200 and b'finishReason":"STOP' not in answer:
                outcomes.append("refused")
            else:
                outcomes.append(str(response.status_code))
    return outcomes


async def test_same_seed_same_requests_same_faults_different_seed_different() -> None:
    prompts = [f"prompt {i % 40}" for i in range(120)]  # every prompt three times
    faults = parse_faults(ISSUE_FAULTS.replace("hang=0.01", "hang=0.0"))
    first = await _statuses(config(faults=faults, seed=1), prompts)
    again = await _statuses(config(faults=faults, seed=1), prompts)
    other = await _statuses(config(faults=faults, seed=2), prompts)
    assert first == again
    assert first != other
    assert {"429", "200"} <= set(first)


async def test_faults_do_not_depend_on_the_order_of_requests() -> None:
    faults = parse_faults("429=0.3,503=0.2")
    prompts = [f"prompt {i}" for i in range(40)]
    forward = await _statuses(config(faults=faults, seed=3), prompts)
    backward = await _statuses(config(faults=faults, seed=3), prompts[::-1])
    assert forward == backward[::-1]


async def test_fault_rates_are_roughly_honoured() -> None:
    faults = parse_faults("429=0.3,503=0.2")
    outcomes = await _statuses(config(faults=faults, seed=5), [f"p{i}" for i in range(300)])
    assert 60 <= outcomes.count("429") <= 120
    assert 35 <= outcomes.count("503") <= 85


async def test_every_transient_kind_shows_up_at_its_rate() -> None:
    sleep = RecordingSleep()
    faults = parse_faults("500=0.15,504=0.15,reset=0.15,truncate=0.15,hang=0.15,hang_s=1")
    outcomes = await _statuses(
        config(faults=faults, seed=9, sleep=sleep), [f"p{i}" for i in range(200)]
    )
    assert {"500", "504", "reset", "truncated", "200"} <= set(outcomes)
    assert 1.0 in sleep.calls  # hangs, answered at once by the fake sleep


async def test_latency_is_slept_for_successes_and_skipped_for_fast_errors() -> None:
    sleep = RecordingSleep()
    async with emulator(config(sleep=sleep, latency=parse_latency("3"))) as (client, _):
        ok = await generate(client, body("fine"))
        busy = await generate(client, body("#503"))
        limited = await generate(client, body("#429"))
        refused = await generate(client, body("#unsafe"))
    assert [ok.status_code, busy.status_code, limited.status_code, refused.status_code] == [
        200,
        503,
        429,
        200,
    ]
    assert sleep.calls == [3.0, 3.0]


async def test_latency_scales_with_image_size() -> None:
    sleep = RecordingSleep()
    async with emulator(config(sleep=sleep, latency=parse_latency("2@size"))) as (client, _):
        for size in ("512", "1K", "2K"):
            await generate(client, body(image_size=size))
    assert sleep.calls == [1.0, 2.0, 3.0]


def test_latency_draws_follow_their_distribution() -> None:
    fingerprints = [hashlib.sha256(str(i).encode()).digest() for i in range(4000)]

    def draws(spec: str, seed: int = 0, size: str = "1K") -> list[float]:
        parsed = parse_latency(spec)
        return [latency_s(parsed, seed, fp, 0, size) for fp in fingerprints]

    uniform = draws("uniform:2-4")
    assert 2 <= min(uniform) < 2.01
    assert 3.99 < max(uniform) <= 4
    assert statistics.fmean(uniform) == pytest.approx(3, abs=0.05)
    lognormal = draws("lognormal:8:0.5")
    assert statistics.fmean(lognormal) == pytest.approx(8, rel=0.05)
    assert statistics.median(lognormal) < 8  # right-skewed, like real generation times
    assert draws("lognormal:8:0.5", seed=0) == lognormal
    assert draws("lognormal:8:0.5", seed=1) != lognormal
    assert draws("lognormal:8:0.5@size", size="4K") == [3 * x for x in lognormal]
