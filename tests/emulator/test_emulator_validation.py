"""Google's validation: each rule's status, canonical code and a message naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.emulator.models import FLASH_31 as FLASH_31_INFO
from pipeline.emulator.validate import GenerationRequest, validate
from tests.emulator.emulator_helpers import (
    FLASH_25,
    FLASH_31,
    PRO_3,
    body,
    emulator,
    generate,
    png_b64,
)


def _with_config(**generation: Any) -> dict[str, Any]:
    return body(generationConfig=generation)


def _inline(mime: str, data: str) -> dict[str, Any]:
    return {
        "contents": [{"parts": [{"inlineData": {"mimeType": mime, "data": data}}, {"text": "x"}]}]
    }


INVALID: list[tuple[str, str, Any, str]] = [
    # (case, model, body, text the message must contain)
    ("imageSize on 2.5 Flash", FLASH_25, body(image_size="1K"), "imageSize"),
    ("lowercase 1k", FLASH_31, body(image_size="1k"), "'1K'"),
    ("512 on 3 Pro", PRO_3, body(image_size="512"), "512"),
    ("512px", FLASH_31, body(image_size="512px"), "imageSize"),
    ("0.5K", FLASH_31, body(image_size="0.5K"), "imageSize"),
    ("unsupported ratio", FLASH_31, body(aspect_ratio="7:5"), "aspectRatio"),
    ("extreme ratio on 3 Pro", PRO_3, body(aspect_ratio="1:8"), "aspectRatio"),
    ("extreme ratio on 2.5 Flash", FLASH_25, body(aspect_ratio="4:1"), "aspectRatio"),
    ("15 input images", FLASH_31, body(images=[(8, 8)] * 15), "15 images"),
    ("candidateCount 2", FLASH_31, _with_config(candidateCount=2), "candidateCount"),
    ("candidate_count 4", FLASH_31, _with_config(candidate_count=4), "candidateCount"),
    ("candidateCount text", FLASH_31, _with_config(candidateCount="two"), "candidate_count"),
    ("temperature text", FLASH_31, _with_config(temperature="hot"), "temperature"),
    ("bad base64", FLASH_31, _inline("image/png", "not base64!!"), "inline_data.data"),
    ("gif input", FLASH_31, _inline("image/gif", png_b64(4, 4, "GIF")), "image/gif"),
    ("bmp input", FLASH_31, _inline("image/bmp", png_b64(4, 4, "BMP")), "image/bmp"),
    ("missing mime type", FLASH_31, _inline("", png_b64(4, 4)), "mime_type"),
    ("garbage image", FLASH_31, _inline("image/png", "aGVsbG8="), "Unable to process input image"),
    ("OpenAI size", FLASH_31, body(size="1024x1024"), 'Unknown name "size"'),
    ("OpenAI n", FLASH_31, body(n=2), 'Unknown name "n"'),
    ("OpenAI prompt", FLASH_31, {"prompt": "a fox"}, 'Unknown name "prompt"'),
    ("unknown config field", FLASH_31, _with_config(quality="hd"), 'Unknown name "quality"'),
    ("image_size snake typo", FLASH_31, _with_config(imageConfig={"size": "2K"}), '"size"'),
    (
        "personGeneration on Gemini API",
        FLASH_31,
        _with_config(imageConfig={"personGeneration": "x"}),
        "personGeneration",
    ),
    ("unknown part field", FLASH_31, {"contents": [{"parts": [{"image": "x"}]}]}, '"image"'),
    ("no contents", FLASH_31, {}, "contents is not specified"),
    ("empty contents", FLASH_31, {"contents": []}, "contents is not specified"),
    ("empty parts", FLASH_31, {"contents": [{"parts": []}]}, "contents[0].parts"),
    (
        "part without data",
        FLASH_31,
        {"contents": [{"parts": [{"thought": True}]}]},
        "oneof field 'data'",
    ),
    (
        "bad role",
        FLASH_31,
        {"contents": [{"role": "system", "parts": [{"text": "x"}]}]},
        "valid role",
    ),
    ("text only output", FLASH_31, body(modalities=["TEXT"]), "response modalities: text"),
    ("audio output", FLASH_31, body(modalities=["IMAGE", "AUDIO"]), "response modalities: audio"),
    ("unknown modality", FLASH_31, body(modalities=["PICTURE"]), "response_modalities[0]"),
    ("not an object", FLASH_31, [1, 2], "Expected an object"),
]


@pytest.mark.parametrize(
    ("case", "model", "request_body", "named"), INVALID, ids=[c[0] for c in INVALID]
)
async def test_invalid_request_gets_googles_400(
    case: str, model: str, request_body: Any, named: str
) -> None:
    async with emulator() as (client, app):
        response = await generate(client, request_body, model=model)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == 400
    assert error["status"] == "INVALID_ARGUMENT"
    assert named in error["message"]
    assert app.stats_snapshot()["billed"] == 0


async def test_body_that_is_not_json_gets_400() -> None:
    async with emulator() as (client, _):
        response = await generate(client, b"{not json")
    assert response.status_code == 400
    assert "Invalid JSON payload" in response.json()["error"]["message"]


async def test_unknown_field_carries_a_bad_request_detail() -> None:
    async with emulator() as (client, _):
        response = await generate(client, body(size="1024x1024"))
    (detail,) = response.json()["error"]["details"]
    assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert 'Unknown name "size"' in detail["fieldViolations"][0]["description"]


async def test_fourteen_input_images_are_accepted() -> None:
    async with emulator() as (client, _):
        response = await generate(client, body(images=[(8, 8)] * 14))
    assert response.status_code == 200


async def test_snake_case_request_is_accepted_and_answered_in_camel_case() -> None:
    snake = {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"inline_data": {"mime_type": "image/png", "data": png_b64(16, 9)}},
                    {"text": "x"},
                ],
            }
        ],
        "generation_config": {
            "response_modalities": ["image", "text"],
            "image_config": {"image_size": "512"},
            "candidate_count": 1,
        },
        "system_instruction": {"parts": [{"text": "be brief"}]},
    }
    async with emulator() as (client, _):
        response = await generate(client, snake)
    assert response.status_code == 200, response.text
    text = response.text
    assert "inlineData" in text
    assert "mimeType" in text
    assert "usageMetadata" in text
    assert "inline_data" not in text


def test_snake_and_camel_case_requests_have_the_same_fingerprint() -> None:
    camel = json.dumps(_with_config(imageConfig={"aspectRatio": "16:9"}, candidateCount=1)).encode()
    snake = json.dumps(
        body(generation_config={"image_config": {"aspect_ratio": "16:9"}, "candidate_count": 1})
    ).encode()
    first = validate(FLASH_31, FLASH_31_INFO, camel)
    second = validate(FLASH_31, FLASH_31_INFO, snake)
    assert isinstance(first, GenerationRequest)
    assert isinstance(second, GenerationRequest)
    assert first.fingerprint == second.fingerprint


@pytest.mark.parametrize("model", ["gemini-2.0-flash", "imagen-4", "gemini-3-pro-image-previews"])
async def test_unknown_model_is_404_not_found(model: str) -> None:
    async with emulator() as (client, _):
        response = await generate(client, body(), model=model)
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["status"] == "NOT_FOUND"
    assert f"models/{model} is not found for API version v1beta" in error["message"]


@pytest.mark.parametrize(
    "model",
    [
        "gemini-2.5-flash-image",
        "gemini-3-pro-image-preview",
        "gemini-3-pro-image",
        "gemini-3.1-flash-image-preview",
        "gemini-3.1-flash-image",
        "models/gemini-3.1-flash-image",
    ],
)
async def test_every_known_model_name_answers_and_echoes_itself(model: str) -> None:
    async with emulator() as (client, _):
        response = await generate(client, body(), model=model)
    assert response.status_code == 200
    assert response.json()["modelVersion"] == model.removeprefix("models/")


async def test_v1_path_is_served_too() -> None:
    async with emulator() as (client, _):
        response = await generate(client, body(), version="v1")
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1beta/models/gemini-3.1-flash-image-preview:streamGenerateContent"),
        ("GET", "/v1beta/models/gemini-3.1-flash-image-preview:generateContent"),
        ("POST", "/v2/models/gemini-3.1-flash-image-preview:generateContent"),
        ("GET", "/"),
    ],
)
async def test_unknown_routes_are_404(method: str, path: str) -> None:
    async with emulator() as (client, _):
        response = await client.request(method, path, headers={"x-goog-api-key": "k"})
    assert response.status_code == 404
    assert response.json()["error"]["status"] == "NOT_FOUND"


@settings(max_examples=40, deadline=None)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=8),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_arbitrary_json_never_crashes_validation(document: object) -> None:
    result = validate(FLASH_31, FLASH_31_INFO, json.dumps(document).encode())
    assert isinstance(result, GenerationRequest) or result.code == 400


@settings(max_examples=40, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "contents": st.lists(
                st.fixed_dictionaries(
                    {
                        "parts": st.lists(
                            st.fixed_dictionaries({"text": st.text(max_size=20)}), max_size=3
                        )
                    },
                    optional={"role": st.sampled_from(["user", "model", "tool", 3])},
                ),
                max_size=3,
            )
        },
        optional={
            "generationConfig": st.fixed_dictionaries(
                {},
                optional={
                    "imageConfig": st.fixed_dictionaries(
                        {},
                        optional={
                            "imageSize": st.sampled_from(["512", "1K", "2K", "4K", "1k", 3, None]),
                            "aspectRatio": st.sampled_from(["1:1", "16:9", "1:8", "5:5", 1]),
                        },
                    ),
                    "candidateCount": st.integers(-2, 3) | st.text(max_size=3),
                    "responseModalities": st.lists(st.sampled_from(["TEXT", "IMAGE", "x", 1])),
                },
            )
        },
    )
)
def test_near_valid_requests_never_crash_validation(document: dict[str, Any]) -> None:
    result = validate(FLASH_31, FLASH_31_INFO, json.dumps(document).encode())
    assert isinstance(result, GenerationRequest) or result.code == 400
