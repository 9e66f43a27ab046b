"""API keys the three ways Google takes them, Google's answers to missing and wrong ones, Vertex."""

from __future__ import annotations

import pytest

from tests.emulator.emulator_helpers import FLASH_31, body, config, emulator, generate

VERTEX = "/v1/projects/my-project/locations/global/publishers/google/models/{model}:generateContent"


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({"x-goog-api-key": "secret"}, {}),
        ({}, {"key": "secret"}),
        ({"authorization": "Bearer secret"}, {}),
    ],
    ids=["header", "query", "bearer"],
)
async def test_the_configured_key_is_accepted_three_ways(
    headers: dict[str, str], params: dict[str, str]
) -> None:
    async with emulator(config(api_key="secret")) as (client, _):
        response = await client.post(
            f"/v1beta/models/{FLASH_31}:generateContent",
            json=body(),
            headers=headers,
            params=params,
        )
    assert response.status_code == 200


async def test_any_key_is_accepted_without_api_key_configured() -> None:
    async with emulator() as (client, _):
        response = await generate(client, body(), key="whatever-you-like")
    assert response.status_code == 200


async def test_wrong_key_gets_api_key_invalid() -> None:
    async with emulator(config(api_key="secret")) as (client, app):
        response = await generate(client, body(), key="not-the-secret")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"] == "API key not valid. Please pass a valid API key."
    info = next(d for d in error["details"] if d["@type"].endswith("google.rpc.ErrorInfo"))
    assert info["reason"] == "API_KEY_INVALID"
    assert app.stats_snapshot()["by_status"] == {"400": 1}


async def test_missing_key_gets_permission_denied() -> None:
    async with emulator() as (client, _):
        response = await generate(client, body(), key=None)
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["status"] == "PERMISSION_DENIED"
    assert error["message"].startswith("Method doesn't allow unregistered callers")


async def test_auth_is_checked_before_the_model_and_the_body() -> None:
    async with emulator(config(api_key="secret")) as (client, _):
        response = await generate(client, b"{junk", model="no-such-model", key="wrong")
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"


async def test_vertex_path_with_bearer_token_answers() -> None:
    async with emulator() as (client, _):
        response = await client.post(
            VERTEX.format(model=FLASH_31),
            json=body(),
            headers={"authorization": "Bearer ya29.token"},
        )
    assert response.status_code == 200
    answer = response.json()
    assert answer["modelVersion"] == FLASH_31
    assert answer["usageMetadata"]["trafficType"] == "ON_DEMAND"


async def test_vertex_path_without_token_is_401_unauthenticated() -> None:
    async with emulator() as (client, _):
        response = await client.post(VERTEX.format(model=FLASH_31), json=body())
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["status"] == "UNAUTHENTICATED"
    assert error["details"][0]["reason"] == "CREDENTIALS_MISSING"


async def test_vertex_path_with_wrong_token_is_401_when_a_key_is_configured() -> None:
    async with emulator(config(api_key="secret")) as (client, _):
        response = await client.post(
            VERTEX.format(model=FLASH_31), json=body(), headers={"authorization": "Bearer nope"}
        )
    assert response.status_code == 401


async def test_vertex_unknown_model_is_404_with_the_publisher_message() -> None:
    async with emulator() as (client, _):
        response = await client.post(
            VERTEX.format(model="gemini-9"), json=body(), headers={"authorization": "Bearer t"}
        )
    assert response.status_code == 404
    assert "Publisher Model `projects/my-project" in response.json()["error"]["message"]


async def test_vertex_accepts_its_own_image_config_fields() -> None:
    request = body(generationConfig={"imageConfig": {"outputMimeType": "image/jpeg"}})
    async with emulator() as (client, _):
        response = await client.post(
            VERTEX.format(model=FLASH_31), json=request, headers={"authorization": "Bearer t"}
        )
    assert response.status_code == 200
    final = response.json()["candidates"][0]["content"]["parts"][-1]
    assert final["inlineData"]["mimeType"] == "image/jpeg"
