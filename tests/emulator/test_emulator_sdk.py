"""Fidelity proof: the official google-genai SDK, which no one here wrote, accepts our answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from pipeline.emulator import BackgroundEmulator
from tests.emulator.emulator_helpers import Lazy, config

if TYPE_CHECKING:
    from google import genai
    from google.genai import errors, types
else:
    genai, errors, types = (
        Lazy("google.genai"),
        Lazy("google.genai.errors"),
        Lazy("google.genai.types"),
    )


@pytest.fixture(scope="module")
def running() -> Iterator[BackgroundEmulator]:
    with BackgroundEmulator(config()) as background:
        yield background


def _client(base_url: str) -> genai.Client:
    # No retry options: the SDK then makes exactly one attempt, so an injected 429 surfaces.
    options = types.HttpOptions(base_url=base_url, api_version="v1beta")
    return genai.Client(api_key="any-key-will-do", http_options=options)


async def test_sdk_gets_an_image_from_the_final_part(running: BackgroundEmulator) -> None:
    client = _client(running.base_url)
    response = await client.aio.models.generate_content(
        model="gemini-3.1-flash-image-preview",
        contents="a lighthouse at dusk",
        config=types.GenerateContentConfig(
            response_modalities=["IMAGE"],
            image_config=types.ImageConfig(aspect_ratio="16:9", image_size="512"),
        ),
    )
    assert response.candidates
    content = response.candidates[0].content
    assert content is not None
    assert content.parts
    final = content.parts[-1]
    image = final.as_image()
    assert image is not None
    assert image.mime_type == "image/png"
    assert image.image_bytes is not None
    assert image.image_bytes.startswith(b"\x89PNG")
    assert final.thought_signature
    assert content.parts[0].thought
    assert response.usage_metadata is not None
    assert response.usage_metadata.candidates_token_count == 747
    assert response.usage_metadata.thoughts_token_count
    assert response.model_version == "gemini-3.1-flash-image-preview"


async def test_sdk_reads_a_refusal(running: BackgroundEmulator) -> None:
    client = _client(running.base_url)
    response = await client.aio.models.generate_content(
        model="gemini-3-pro-image-preview", contents="#unsafe a portrait"
    )
    assert response.candidates
    assert response.candidates[0].finish_reason == types.FinishReason.IMAGE_SAFETY
    blocked = await client.aio.models.generate_content(
        model="gemini-2.5-flash-image", contents="#block a portrait"
    )
    assert blocked.prompt_feedback is not None
    assert blocked.prompt_feedback.block_reason == types.BlockedReason.PROHIBITED_CONTENT


async def test_sdk_surfaces_an_injected_429_as_client_error(running: BackgroundEmulator) -> None:
    client = _client(running.base_url)
    with pytest.raises(errors.ClientError) as info:
        await client.aio.models.generate_content(
            model="gemini-2.5-flash-image", contents="#429 a cat in a hat"
        )
    assert info.value.code == 429
    assert info.value.status == "RESOURCE_EXHAUSTED"


async def test_sdk_surfaces_validation_errors(running: BackgroundEmulator) -> None:
    client = _client(running.base_url)
    with pytest.raises(errors.ClientError) as info:
        await client.aio.models.generate_content(
            model="gemini-2.5-flash-image",
            contents="a cat",
            config=types.GenerateContentConfig(image_config=types.ImageConfig(image_size="2K")),
        )
    assert info.value.code == 400
    assert "imageSize" in (info.value.message or "")


async def test_sdk_surfaces_server_errors(running: BackgroundEmulator) -> None:
    client = _client(running.base_url)
    with pytest.raises(errors.ServerError) as info:
        await client.aio.models.generate_content(model="gemini-2.5-flash-image", contents="#503")
    assert info.value.code == 503
