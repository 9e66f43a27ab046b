"""The OpenAI-compatible chat gateway: the four image shapes, its refusal and error conventions,
its own key and credit errors, usage.cost, and hosted links fetched without the key."""

from __future__ import annotations

import base64
import io
import json
import re
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.emulator.chat import GatewayError, translate
from tests.emulator.emulator_helpers import config, emulator, png_b64
from tests.emulator.routes_helpers import stats

FLASH_31 = "google/gemini-3.1-flash-image-preview"
AUTH = {"authorization": "Bearer sk-gateway"}
DATA_URL = re.compile(r"data:(image/\w+);base64,([A-Za-z0-9+/=]+)")


def chat_body(
    prompt: str = "a red fox in the snow",
    *,
    model: str = FLASH_31,
    images: tuple[tuple[int, int], ...] = (),
    **extra: Any,
) -> dict[str, Any]:
    content: list[dict[str, Any]] = [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png_b64(w, h)}"}}
        for w, h in images
    ]
    content.append({"type": "text", "text": prompt})
    return {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "modalities": ["image", "text"],
        "image_config": {"aspect_ratio": "16:9", "image_size": "1K"},
        **extra,
    }


async def chat(
    client: httpx.AsyncClient,
    request: dict[str, Any],
    *,
    headers: dict[str, str] | None = None,
    path: str = "/v1/chat/completions",
) -> httpx.Response:
    return await client.post(path, json=request, headers=AUTH if headers is None else headers)


def _size(data_url: str) -> tuple[int, int]:
    match = DATA_URL.fullmatch(data_url)
    assert match is not None
    with Image.open(io.BytesIO(base64.b64decode(match[2]))) as picture:
        return picture.size


async def test_images_shape_puts_the_final_image_in_message_images() -> None:
    async with emulator(config(chat_shape="images")) as (client, app):
        response = await chat(client, chat_body())
    assert response.status_code == 200
    answer = response.json()
    (choice,) = answer["choices"]
    assert (choice["finish_reason"], choice["native_finish_reason"]) == ("stop", "STOP")
    (image,) = choice["message"]["images"]
    assert _size(image["image_url"]["url"]) == (1376, 768)
    assert answer["model"] == FLASH_31
    assert answer["usage"]["cost"] == 0.067
    assert answer["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0
    counters = stats(app)
    assert counters["by_route"]["openai-chat"]["billed"] == 1
    assert counters["billed_usd"] == 0.067


async def test_parts_shape_ends_with_the_final_image() -> None:
    async with emulator(config(chat_shape="parts")) as (client, _):
        response = await chat(client, chat_body())
    parts = response.json()["choices"][0]["message"]["content"]
    urls = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    assert len(urls) == 2  # Gemini 3's draft first
    assert _size(urls[-1]) == (1376, 768)
    assert _size(urls[0]) != (1376, 768)
    assert parts[-1]["type"] == "text"


@pytest.mark.parametrize(
    ("model", "images"), [(FLASH_31, 2), ("gemini-2.5-flash-image", 1)], ids=["3.1", "2.5"]
)
async def test_markdown_shape_carries_data_urls_in_a_string_and_the_last_is_the_answer(
    model: str, images: int
) -> None:
    request = chat_body(model=model, image_config={"aspect_ratio": "16:9"})
    async with emulator(config(chat_shape="markdown")) as (client, _):
        response = await chat(client, request)
    content = response.json()["choices"][0]["message"]["content"]
    assert isinstance(content, str)
    urls = [match[0] for match in DATA_URL.finditer(content)]
    assert content.startswith("![image](data:image/png;base64,")
    assert len(urls) == images
    assert _size(urls[-1]) in ((1376, 768), (1344, 768))


async def test_link_shape_serves_the_image_at_an_emulator_url() -> None:
    async with emulator(config(chat_shape="link")) as (client, app):
        response = await chat(client, chat_body())
        content = response.json()["choices"][0]["message"]["content"]
        (url,) = re.findall(r"\((http://[^)]+)\)", content)
        fetched = await client.get(url)
        leaked = await client.get(url, headers=AUTH)
        missing = await client.get("http://emulator/_emulator/images/nope.png")
    assert url.startswith("http://emulator/_emulator/images/")
    assert fetched.status_code == 200
    assert fetched.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(fetched.content)) as picture:
        assert picture.size == (1376, 768)
    assert leaked.status_code == 200
    assert missing.status_code == 404
    counters = stats(app)
    assert (counters["links_fetched"], counters["link_fetches_with_key"]) == (2, 1)
    assert counters["requests"] == 1


async def test_a_refused_image_is_content_filter_and_costs_nothing() -> None:
    async with emulator() as (client, app):
        response = await chat(client, chat_body("#unsafe a fox"))
    assert response.status_code == 200
    (choice,) = response.json()["choices"]
    assert choice["finish_reason"] == "content_filter"
    assert choice["native_finish_reason"] == "IMAGE_SAFETY"
    assert "images" not in choice["message"]
    assert response.json()["usage"]["cost"] == 0
    assert (stats(app)["refused"], stats(app)["billed"]) == (1, 0)


async def test_a_blocked_prompt_is_a_400_prompt_blocked() -> None:
    async with emulator() as (client, _):
        response = await chat(client, chat_body("#block a fox"))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "prompt_blocked"
    assert json.loads(error["metadata"]["raw"])["promptFeedback"]["blockReason"]


async def test_words_instead_of_an_image_are_a_plain_answer() -> None:
    async with emulator() as (client, _):
        response = await chat(client, chat_body("#noimage a fox"))
    message = response.json()["choices"][0]["message"]
    assert response.json()["choices"][0]["finish_reason"] == "stop"
    assert "images" not in message
    assert "unable to create" in message["content"]


async def test_raw_convention_embeds_googles_error_in_metadata_raw() -> None:
    async with emulator(config(chat_errors="raw")) as (client, _):
        response = await chat(client, chat_body("#429x1 a fox"))
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == 429
    google = json.loads(error["metadata"]["raw"])["error"]
    assert google["status"] == "RESOURCE_EXHAUSTED"
    assert any(d["@type"].endswith("RetryInfo") for d in google["details"])


async def test_upstream_convention_is_new_apis_upstream_error() -> None:
    async with emulator(config(chat_errors="upstream")) as (client, _):
        overloaded = await chat(client, chat_body("#503x1 a fox"))
        invalid = await chat(client, chat_body(image_config={"aspect_ratio": "7:3"}))
    assert overloaded.status_code == 503
    assert overloaded.json()["error"]["type"] == "upstream_error"
    assert overloaded.json()["error"]["code"] == 503
    assert invalid.status_code == 400
    assert "aspectRatio" in invalid.json()["error"]["message"]


async def test_mixed_convention_uses_both_and_is_seeded() -> None:
    async def kinds() -> list[bool]:
        async with emulator(config(chat_errors="mixed", seed=5)) as (client, _):
            answers = [await chat(client, chat_body(f"#500 fox {i}")) for i in range(12)]
        return ["type" in a.json()["error"] for a in answers]

    first = await kinds()
    assert first == await kinds()
    assert 0 < sum(first) < len(first)


@pytest.mark.parametrize(
    ("headers", "emulator_key", "status"),
    [({}, None, 401), ({"authorization": "Bearer wrong"}, "right", 401)],
    ids=["no-key", "wrong-key"],
)
async def test_the_gateway_key_is_checked_first(
    headers: dict[str, str], emulator_key: str | None, status: int
) -> None:
    async with emulator(config(api_key=emulator_key)) as (client, app):
        response = await chat(client, chat_body(), headers=headers)
    assert response.status_code == status
    assert response.json()["error"]["message"]
    assert stats(app)["billed"] == 0


async def test_out_of_credit_is_402() -> None:
    async with emulator() as (client, _):
        response = await chat(client, chat_body("#402 a fox"))
    assert response.status_code == 402


@pytest.mark.parametrize(
    "extra",
    [{"size": "1024x1024"}, {"n": 2}, {"model": "google/gemini-9-image"}, {"stream": True}],
    ids=["size", "n", "unknown-model", "stream"],
)
async def test_requests_the_gateway_refuses(extra: dict[str, Any]) -> None:
    async with emulator() as (client, app):
        response = await chat(client, {**chat_body(), **extra})
    assert response.status_code == 400
    assert stats(app)["billed"] == 0


async def test_input_images_and_n_1_and_the_openrouter_path_are_accepted() -> None:
    request = chat_body(images=((300, 200),), n=1, image_config={"image_size": "512"})
    async with emulator() as (client, _):
        response = await chat(client, request, path="/api/v1/chat/completions")
    (image,) = response.json()["choices"][0]["message"]["images"]
    assert _size(image["image_url"]["url"]) == (632, 424)  # 3:2, the input's ratio


async def test_service_tier_flex_is_billed_half_and_echoed() -> None:
    async with emulator(config(time_scale=1e-6)) as (client, app):
        response = await chat(client, chat_body(service_tier="flex"))
    assert response.json()["service_tier"] == "flex"
    assert response.json()["usage"]["cost"] == 0.0335
    assert stats(app)["by_tier"]["flex"]["billed"] == 1


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_translate_never_crashes_on_arbitrary_json(document: object) -> None:
    result = translate(json.dumps(document).encode())
    assert isinstance(result, GatewayError) or result.gemini_body


@settings(max_examples=100, deadline=None)
@given(
    st.fixed_dictionaries(
        {"model": st.just(FLASH_31)},
        optional={
            "messages": st.lists(
                st.dictionaries(
                    st.sampled_from(["role", "content", "name"]),
                    st.none()
                    | st.text(max_size=5)
                    | st.lists(
                        st.dictionaries(
                            st.sampled_from(["type", "text", "image_url"]),
                            st.text(max_size=5)
                            | st.dictionaries(st.just("url"), st.text(max_size=30)),
                            max_size=3,
                        ),
                        max_size=3,
                    ),
                    max_size=3,
                ),
                max_size=3,
            ),
            "modalities": st.lists(st.text(max_size=6), max_size=3),
            "image_config": st.dictionaries(st.text(max_size=12), st.text(max_size=5), max_size=2),
        },
    )
)
def test_translate_never_crashes_on_chat_shaped_json(document: dict[str, Any]) -> None:
    result = translate(json.dumps(document).encode())
    assert (
        isinstance(result, GatewayError) or json.loads(result.gemini_body)["contents"] is not None
    )
