"""Service tiers: how each route asks for Flex and Priority and hears which tier served it,
Flex latency and shedding, the tier's price in the bill, and --time-scale."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from pipeline.emulator import parse_faults, parse_latency
from tests.emulator.emulator_helpers import (
    FLASH_25,
    FLASH_31,
    PRO_3,
    FakeClock,
    RecordingSleep,
    body,
    config,
    emulator,
    generate,
)
from tests.emulator.routes_helpers import GLOBAL, TOKEN, stats

REGIONAL = "/v1/projects/p/locations/us-central1/publishers/google/models/{model}:generateContent"
FLEX_HEADERS = {
    "x-vertex-ai-llm-request-type": "shared",
    "x-vertex-ai-llm-shared-request-type": "flex",
}


async def _vertex(
    client: httpx.AsyncClient,
    request: dict[str, Any],
    *,
    headers: dict[str, str] | None = None,
    path: str = GLOBAL,
    model: str = FLASH_31,
) -> httpx.Response:
    return await client.post(
        path.format(model=model), json=request, headers={**TOKEN, **(headers or {})}
    )


@pytest.mark.parametrize(
    ("tier", "reported"), [("flex", "flex"), ("priority", "priority"), ("standard", "standard")]
)
async def test_gemini_api_reports_the_service_tier_it_was_asked_for(
    tier: str, reported: str
) -> None:
    async with emulator(config(time_scale=1e-6)) as (client, app):
        response = await generate(client, body(serviceTier=tier))
    assert response.status_code == 200
    assert response.json()["usageMetadata"]["serviceTier"] == reported
    assert stats(app)["by_tier"][tier]["billed"] == 1


async def test_gemini_api_without_a_tier_reports_none() -> None:
    async with emulator() as (client, app):
        response = await generate(client, body())
    assert "serviceTier" not in response.json()["usageMetadata"]
    assert stats(app)["by_tier"]["standard"]["requests"] == 1


async def test_vertex_flex_headers_are_served_on_demand_flex() -> None:
    async with emulator(config(time_scale=1e-6)) as (client, app):
        response = await _vertex(client, body(), headers=FLEX_HEADERS)
    assert response.status_code == 200
    assert response.json()["usageMetadata"]["trafficType"] == "ON_DEMAND_FLEX"
    assert "serviceTier" not in response.json()["usageMetadata"]
    assert stats(app)["by_tier"]["flex"]["billed"] == 1


async def test_vertex_accepts_the_body_field_and_the_headers_win() -> None:
    priority = {**FLEX_HEADERS, "x-vertex-ai-llm-shared-request-type": "priority"}
    async with emulator(config(time_scale=1e-6)) as (client, _):
        from_body = await _vertex(client, body("a", serviceTier="flex"))
        both = await _vertex(client, body("b", serviceTier="flex"), headers=priority)
    assert from_body.json()["usageMetadata"]["trafficType"] == "ON_DEMAND_FLEX"
    assert both.json()["usageMetadata"]["trafficType"] == "ON_DEMAND_PRIORITY"


async def test_vertex_flex_outside_global_is_refused() -> None:
    async with emulator() as (client, app):
        response = await _vertex(
            client, body(), headers=FLEX_HEADERS, path=REGIONAL, model=PRO_3.replace("-preview", "")
        )
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("Flex API is not supported for model:")
    assert stats(app)["billed"] == 0


async def test_a_model_without_flex_says_so() -> None:
    async with emulator(config(no_flex_models=frozenset({FLASH_25}))) as (client, _):
        refused = await generate(client, body(serviceTier="flex"), model=FLASH_25)
        standard = await generate(client, body(), model=FLASH_25)
    assert refused.status_code == 400
    message = refused.json()["error"]["message"]
    assert message == f"Flex API is not supported for model: {FLASH_25}."
    assert standard.status_code == 200


async def test_an_unknown_service_tier_is_a_400() -> None:
    async with emulator() as (client, _):
        response = await generate(client, body(serviceTier="cheap"))
    assert response.status_code == 400
    assert "service_tier" in response.json()["error"]["message"]


async def test_flex_waits_the_flex_latency_times_the_time_scale() -> None:
    sleep = RecordingSleep()
    emulator_config = config(
        sleep=sleep,
        latency=parse_latency("2"),
        flex_latency=parse_latency("600"),
        time_scale=0.01,
    )
    async with emulator(emulator_config) as (client, _):
        await generate(client, body("standard one"))
        await generate(client, body("flex one", serviceTier="flex"))
    assert sleep.calls == [pytest.approx(0.02), pytest.approx(6.0)]


async def test_time_scale_shrinks_the_retry_delays_it_asks_for() -> None:
    emulator_config = config(faults=parse_faults("retry_delay=30"), time_scale=0.01)
    async with emulator(emulator_config) as (client, _):
        response = await generate(client, body("#429x1 a fox"))
    details = response.json()["error"]["details"]
    assert next(d for d in details if d["@type"].endswith("RetryInfo"))["retryDelay"] == "0.3s"


async def test_time_scale_shrinks_the_rpm_window() -> None:
    clock = FakeClock()
    async with emulator(config(rpm=1, clock=clock, time_scale=0.01)) as (client, app):
        assert (await generate(client, body("one"))).status_code == 200
        refused = await generate(client, body("two"))
        clock.advance(0.6)
        again = await generate(client, body("two"))
    assert refused.status_code == 429
    delay = next(d for d in refused.json()["error"]["details"] if "RetryInfo" in d["@type"])
    assert delay["retryDelay"] == "0.6s"
    assert again.status_code == 200
    assert stats(app)["early_retries"] == 0


@pytest.mark.parametrize("status", [429, 503])
async def test_shed_flex_requests_get_the_configured_status_and_are_not_billed(
    status: int,
) -> None:
    emulator_config = config(time_scale=1e-6, shed_status=status)
    async with emulator(emulator_config) as (client, app):
        shed = await generate(client, body("#shedx1 a fox", serviceTier="flex"))
        retried = await generate(client, body("#shedx1 a fox", serviceTier="flex"))
        standard = await generate(client, body("#shed a hen"))
    assert shed.status_code == status
    assert "QuotaFailure" not in shed.text
    assert retried.status_code == 200
    assert standard.status_code == 200  # only Flex is sheddable
    counters = stats(app)
    assert counters["faults"] == {"shed": 1}
    assert counters["by_tier"]["flex"] == {
        "requests": 2,
        "billed": 1,
        "shed": 1,
        "billed_usd": 0.0335,
    }


async def test_shed_rate_is_drawn_for_flex_only_and_seeded() -> None:
    emulator_config = config(time_scale=1e-6, faults=parse_faults("shed=0.5"), seed=3)
    async with emulator(emulator_config) as (client, app):
        flex = [
            (await generate(client, body(f"p{i}", serviceTier="flex"))).status_code
            for i in range(40)
        ]
        standard = [(await generate(client, body(f"p{i}"))).status_code for i in range(10)]
    assert 5 < flex.count(503) < 35
    assert standard == [200] * 10
    assert stats(app)["by_tier"]["flex"]["shed"] == flex.count(503)


async def test_bill_counts_each_tier_at_its_price() -> None:
    async with emulator(config(time_scale=1e-6)) as (client, app):
        for tier in ("standard", "flex", "priority"):
            request = body(f"a {tier} fox", image_size="2K", serviceTier=tier)
            assert (await generate(client, request, model=PRO_3)).status_code == 200
    counters = stats(app)
    assert counters["by_tier"]["standard"]["billed_usd"] == 0.134
    assert counters["by_tier"]["flex"]["billed_usd"] == 0.067
    assert counters["by_tier"]["priority"]["billed_usd"] == pytest.approx(0.2412)
    assert counters["billed_usd"] == pytest.approx(0.134 + 0.067 + 0.2412)


async def test_input_images_are_billed_on_3_pro() -> None:
    async with emulator() as (client, app):
        await generate(client, body(images=[(64, 64), (64, 64)]), model=PRO_3)
    assert stats(app)["billed_usd"] == pytest.approx(0.134 + 2 * 0.0011)


async def test_the_same_request_resent_at_another_tier_is_a_billed_duplicate() -> None:
    async with emulator(config(time_scale=1e-6)) as (client, app):
        await generate(client, body("one fox", serviceTier="flex"))
        await generate(client, body("one fox"))
    counters = stats(app)
    assert counters["billed"] == 2
    assert counters["billed_duplicates"] == 1
