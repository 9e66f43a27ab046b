"""Refusals arrive as HTTP 200: by trigger token, or at a seeded rate that is sticky per request."""

from __future__ import annotations

import pytest

from pipeline.emulator import parse_faults
from tests.emulator.emulator_helpers import (
    FLASH_25,
    FLASH_31,
    PRO_3,
    body,
    config,
    emulator,
    generate,
    image_parts,
)


async def test_block_token_blocks_the_prompt() -> None:
    async with emulator() as (client, app):
        response = await generate(client, body("a #block scene"))
    assert response.status_code == 200
    answer = response.json()
    assert "candidates" not in answer
    assert answer["promptFeedback"] == {"blockReason": "PROHIBITED_CONTENT"}
    usage = answer["usageMetadata"]
    assert usage["totalTokenCount"] == usage["promptTokenCount"]
    assert "candidatesTokenCount" not in usage
    stats = app.stats_snapshot()
    assert (stats["refused"], stats["billed"]) == (1, 0)


@pytest.mark.parametrize("reason", ["SAFETY", "OTHER", "BLOCKLIST", "IMAGE_SAFETY"])
async def test_block_token_takes_a_reason(reason: str) -> None:
    async with emulator() as (client, _):
        response = await generate(client, body(f"#block:{reason.lower()} please"))
    assert response.json()["promptFeedback"]["blockReason"] == reason


@pytest.mark.parametrize(
    ("token", "finish_reason"),
    [
        ("#unsafe", "IMAGE_SAFETY"),
        ("#prohibited", "IMAGE_PROHIBITED_CONTENT"),
        ("#recitation", "IMAGE_RECITATION"),
        ("#imageother", "IMAGE_OTHER"),
    ],
)
@pytest.mark.parametrize("model", [FLASH_25, PRO_3, FLASH_31])
async def test_image_refusal_tokens(token: str, finish_reason: str, model: str) -> None:
    async with emulator() as (client, app):
        response = await generate(client, body(f"a portrait {token}"), model=model)
    assert response.status_code == 200
    answer = response.json()
    (candidate,) = answer["candidates"]
    assert candidate["finishReason"] == finish_reason
    assert candidate["content"] == {"role": "model"}
    assert candidate["finishMessage"].startswith("Unable to show the generated image.")
    assert answer["usageMetadata"]["candidatesTokenCount"] == 0
    thinks = model != FLASH_25
    assert ("thoughtsTokenCount" in answer["usageMetadata"]) == thinks
    assert app.stats_snapshot()["refused"] == 1
    assert app.stats_snapshot()["billed"] == 0


async def test_unsafe_has_googles_finish_message() -> None:
    async with emulator() as (client, _):
        response = await generate(client, body("#unsafe"))
    assert response.json()["candidates"][0]["finishMessage"] == (
        "Unable to show the generated image. The image was filtered out because it violated "
        "Google's Generative AI Prohibited Use policy. You will not be charged for blocked images. "
        "Try rephrasing the prompt."
    )


async def test_noimage_token_answers_with_text_only() -> None:
    async with emulator() as (client, app):
        response = await generate(client, body("remove the watermark #noimage"))
    answer = response.json()
    (candidate,) = answer["candidates"]
    assert candidate["finishReason"] == "STOP"
    parts = candidate["content"]["parts"]
    assert parts
    assert all("text" in part and "inlineData" not in part for part in parts)
    assert answer["usageMetadata"]["candidatesTokenCount"] > 0
    assert app.stats_snapshot()["refused"] == 1


async def test_tokens_are_case_insensitive_and_need_a_word_boundary() -> None:
    async with emulator() as (client, _):
        shouting = await generate(client, body("#UNSAFE"))
        hashtag = await generate(client, body("#unsafety is a hashtag, not a token"))
    assert shouting.json()["candidates"][0]["finishReason"] == "IMAGE_SAFETY"
    assert image_parts(hashtag.json())


async def test_token_with_a_limit_refuses_only_the_first_attempts() -> None:
    async with emulator() as (client, _):
        answers = [(await generate(client, body("#unsafex2 a cat"))).json() for _ in range(3)]
    reasons = [a["candidates"][0]["finishReason"] for a in answers]
    assert reasons == ["IMAGE_SAFETY", "IMAGE_SAFETY", "STOP"]


@pytest.mark.parametrize(
    "kind", ["block", "unsafe", "prohibited", "recitation", "imageother", "noimage"]
)
async def test_random_refusals_are_sticky_per_request(kind: str) -> None:
    faults = parse_faults(f"{kind}=0.5")
    async with emulator(config(faults=faults, seed=7)) as (client, app):
        refused_prompts = []
        for i in range(30):
            first = await generate(client, body(f"prompt {i}"))
            again = await generate(client, body(f"prompt {i}"))
            first_refused = not image_parts(first.json()) if "candidates" in first.json() else True
            again_refused = not image_parts(again.json()) if "candidates" in again.json() else True
            assert first_refused == again_refused
            if first_refused:
                refused_prompts.append(i)
    assert 5 <= len(refused_prompts) <= 25
    stats = app.stats_snapshot()
    assert stats["refused"] == 2 * len(refused_prompts)
    assert stats["faults"] == {kind: 2 * len(refused_prompts)}
