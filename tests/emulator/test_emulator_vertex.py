"""Vertex AI's paths (regional, multi-region, global, express mode) and the Gemini API's two
versions; which location serves which model; Vertex's auth, permission and error shapes;
Model Armor; unbilled model reads; ``by_route``."""

from __future__ import annotations

import json

import pytest

from tests.emulator.emulator_helpers import FLASH_25, FLASH_31, KEY, PRO_3, body, config, emulator
from tests.emulator.emulator_helpers import generate as gemini_generate
from tests.emulator.routes_helpers import GLOBAL, TOKEN, stats

PRO_GA = "gemini-3-pro-image"
PROJECT_PATH = "/{v}/projects/acme/locations/{loc}/publishers/google/models/{m}:generateContent"
EXPRESS = "/{v}/publishers/google/models/{m}:generateContent"


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
@pytest.mark.parametrize(
    ("location", "model"),
    [
        ("global", FLASH_31),
        ("us-central1", PRO_GA),
        ("europe-west4", FLASH_25),
        ("us", PRO_GA),
        ("eu", FLASH_25),
    ],
)
async def test_vertex_project_paths_answer_on_both_versions(
    version: str, location: str, model: str
) -> None:
    path = PROJECT_PATH.format(v=version, loc=location, m=model)
    async with emulator() as (client, app):
        response = await client.post(path, json=body(), headers=TOKEN)
    assert response.status_code == 200
    answer = response.json()
    assert answer["usageMetadata"]["trafficType"] == "ON_DEMAND"
    assert "createTime" in answer
    by_route = stats(app)["by_route"]
    assert set(by_route) == {"vertex"}
    assert by_route["vertex"]["billed"] == 1


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
@pytest.mark.parametrize(
    ("headers", "params"), [({"x-goog-api-key": "k"}, {}), ({}, {"key": "k"}), (TOKEN, {})]
)
async def test_express_mode_takes_a_key_or_a_token(
    version: str, headers: dict[str, str], params: dict[str, str]
) -> None:
    path = EXPRESS.format(v=version, m=FLASH_31)
    async with emulator() as (client, app):
        response = await client.post(path, json=body(), headers=headers, params=params)
    assert response.status_code == 200
    assert response.json()["usageMetadata"]["trafficType"] == "ON_DEMAND"
    assert stats(app)["by_route"]["vertex-express"]["billed"] == 1


async def test_express_mode_without_credentials_is_401_and_a_wrong_key_400() -> None:
    path = EXPRESS.format(v="v1", m=FLASH_31)
    async with emulator(config(api_key="secret")) as (client, _):
        missing = await client.post(path, json=body())
        wrong = await client.post(path, json=body(), params={"key": "nope"})
    assert missing.status_code == 401
    assert missing.json()["error"]["details"][0]["reason"] == "CREDENTIALS_MISSING"
    assert wrong.status_code == 400
    info = wrong.json()["error"]["details"][0]
    assert info["reason"] == "API_KEY_INVALID"
    assert info["metadata"]["service"] == "aiplatform.googleapis.com"


@pytest.mark.parametrize("version", ["v1", "v1beta"])
async def test_gemini_api_answers_on_v1_and_v1beta(version: str) -> None:
    async with emulator() as (client, app):
        response = await gemini_generate(client, body(), version=version)
    assert response.status_code == 200
    assert "trafficType" not in response.json()["usageMetadata"]
    assert stats(app)["by_route"]["gemini"]["requests"] == 1


@pytest.mark.parametrize(
    ("location", "model"),
    [("us-central1", FLASH_31), ("us", "gemini-3.1-flash-image"), ("global", PRO_3)],
    ids=["3.1-flash-is-global-only", "not-in-multi-region-either", "3-pro-preview-id-is-gone"],
)
async def test_a_model_vertex_does_not_serve_there_is_404(location: str, model: str) -> None:
    path = PROJECT_PATH.format(v="v1", loc=location, m=model)
    async with emulator() as (client, app):
        response = await client.post(path, json=body(), headers=TOKEN)
    assert response.status_code == 404
    assert f"locations/{location}/publishers/google/models/{model}" in response.text
    assert stats(app)["billed"] == 0


async def test_an_unknown_project_is_permission_denied() -> None:
    path = PROJECT_PATH.format(v="v1", loc="global", m=FLASH_31)
    async with emulator(config(vertex_projects=frozenset({"other"}))) as (client, _):
        response = await client.post(path, json=body(), headers=TOKEN)
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["status"] == "PERMISSION_DENIED"
    assert error["details"][0]["reason"] == "IAM_PERMISSION_DENIED"
    assert "projects/acme/locations/global" in error["message"]


@pytest.mark.parametrize(("rate", "array"), [(0.0, False), (1.0, True)])
async def test_vertex_errors_come_as_an_array_at_the_configured_rate(
    rate: float, array: bool
) -> None:
    async with emulator(config(error_array=rate)) as (client, _):
        response = await client.post(
            GLOBAL.format(model=FLASH_31), json=body("#503x1 a fox"), headers=TOKEN
        )
        gemini = await gemini_generate(client, body("#503x1 a hen"))
    assert response.status_code == 503
    document = response.json()
    error = document[0]["error"] if array else document["error"]
    assert isinstance(document, list) is array
    assert error["status"] == "UNAVAILABLE"
    assert isinstance(gemini.json(), dict)  # the Gemini API always answers an object


async def test_model_armor_blocks_the_prompt_and_bills_it() -> None:
    async with emulator() as (client, app):
        response = await client.post(
            GLOBAL.format(model=FLASH_31), json=body("#armor a fox"), headers=TOKEN
        )
    answer = response.json()
    assert response.status_code == 200
    assert "candidates" not in answer
    assert answer["promptFeedback"]["blockReason"] == "MODEL_ARMOR"
    assert answer["promptFeedback"]["blockReasonMessage"]
    counters = stats(app)
    assert (counters["refused"], counters["billed"], counters["faults"]) == (1, 1, {"armor": 1})


async def test_model_armor_blocks_the_answer() -> None:
    async with emulator() as (client, _):
        response = await client.post(
            GLOBAL.format(model=PRO_GA), json=body("#armorout a fox"), headers=TOKEN
        )
    (candidate,) = response.json()["candidates"]
    assert candidate["finishReason"] == "MODEL_ARMOR"
    assert "parts" not in candidate["content"]


async def test_model_armor_is_vertex_only() -> None:
    async with emulator() as (client, _):
        plain = await gemini_generate(client, body("#armor a fox"))
        config_field = await gemini_generate(client, body(modelArmorConfig={}))
        vertex_field = await client.post(
            GLOBAL.format(model=FLASH_31), json=body(modelArmorConfig={}), headers=TOKEN
        )
    assert plain.status_code == 200
    assert plain.json()["candidates"][0]["finishReason"] == "STOP"
    assert config_field.status_code == 400
    assert vertex_field.status_code == 200


async def test_model_reads_are_checked_and_unbilled() -> None:
    vertex_model = "/v1beta1/projects/acme/locations/global/publishers/google/models/"
    async with emulator(config(vertex_projects=frozenset({"acme"}))) as (client, app):
        gemini = await client.get(f"/v1beta/models/{FLASH_31}", headers={"x-goog-api-key": KEY})
        no_key = await client.get(f"/v1/models/{FLASH_31}")
        vertex = await client.get(vertex_model + FLASH_31, headers=TOKEN)
        elsewhere = await client.get(vertex_model.replace("acme", "typo") + FLASH_31, headers=TOKEN)
        regional = await client.get(
            vertex_model.replace("global", "us-central1") + FLASH_31, headers=TOKEN
        )
        express = await client.get(f"/v1/publishers/google/models/{PRO_GA}", params={"key": "k"})
    assert gemini.status_code == 200
    assert gemini.json()["name"] == f"models/{FLASH_31}"
    assert "generateContent" in gemini.json()["supportedGenerationMethods"]
    assert no_key.status_code == 403
    assert vertex.json()["name"] == f"publishers/google/models/{FLASH_31}"
    assert elsewhere.status_code == 403
    assert regional.status_code == 404
    assert express.json()["launchStage"] == "GA"
    counters = stats(app)
    assert (counters["model_reads"], counters["requests"], counters["billed"]) == (6, 0, 0)


async def test_other_verbs_are_still_404() -> None:
    async with emulator() as (client, _):
        stream = await client.post(
            f"/v1beta/models/{FLASH_31}:streamGenerateContent",
            json=body(),
            headers={"x-goog-api-key": KEY},
        )
    assert stream.status_code == 404
    assert json.loads(stream.text)["error"]["status"] == "NOT_FOUND"
