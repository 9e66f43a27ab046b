"""The chat gateway's request: what goes in the body (and what never does), the endpoint from
--base-url, the Bearer key, and source links a gateway cannot be sent."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.core.config import ApiKey, AuthStyle
from pipeline.core.errors import UsageError
from pipeline.core.tiers import FLEX_TIMEOUT_S
from pipeline.core.types import Job, Tier
from pipeline.plan.sources import SourceCache, SourceImageError
from pipeline.providers.auth import ApiKeyAuth
from pipeline.providers.openai_chat.provider import CAPABILITIES, OpenAIChatProvider, chat_url
from tests.helpers import make_image

URL = "https://gateway.example/api/v1/chat/completions"


def job(**fields: Any) -> Job:
    values: dict[str, Any] = {
        "row_id": "r1",
        "line": 1,
        "prompt": "a red fox in the snow",
        "images": (),
        "model": "google/gemini-3.1-flash-image-preview",
        "image_size": "2K",
        "aspect_ratio": "16:9",
    }
    return Job(**{**values, **fields})


def body(j: Job) -> dict[str, Any]:
    request = OpenAIChatProvider(URL).prepare(j, SourceCache())
    assert request.url == URL
    parsed: dict[str, Any] = json.loads(request.body)
    return parsed


def test_sources_go_first_as_data_urls_and_the_prompt_last(tmp_path: Path) -> None:
    photo = make_image(tmp_path / "a.png")
    link = "https://cdn.example/b.jpg"
    sent = body(job(images=(str(photo), link), system_instruction="studio light"))
    system, user = sent["messages"]
    assert system == {"role": "system", "content": "studio light"}
    first, second, prompt = user["content"]
    assert first["type"] == "image_url"
    url = first["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == photo.read_bytes()
    assert second == {"type": "image_url", "image_url": {"url": link}}
    assert prompt == {"type": "text", "text": "a red fox in the snow"}


def test_size_and_shape_go_in_image_config_never_as_n_or_size() -> None:
    sent = body(job(temperature=0.4, seed=9))
    assert sent["model"] == "google/gemini-3.1-flash-image-preview"
    assert sent["modalities"] == ["image", "text"]
    assert sent["image_config"] == {"aspect_ratio": "16:9", "image_size": "2K"}
    assert (sent["temperature"], sent["seed"]) == (0.4, 9)
    assert "n" not in sent
    assert "size" not in sent
    assert "stream" not in sent
    assert "service_tier" not in sent


def test_a_model_without_sizes_gets_no_image_size() -> None:
    sent = body(job(model="google/gemini-2.5-flash-image", image_size="1K"))
    assert sent["image_config"] == {"aspect_ratio": "16:9"}
    assert "image_config" not in body(job(image_size=None, aspect_ratio=None))


@pytest.mark.parametrize("link", ["gs://bucket/a.png", "http://cdn.example/a.png"])
def test_a_link_a_gateway_cannot_fetch_is_refused_before_sending(link: str) -> None:
    with pytest.raises(SourceImageError, match="openai-chat"):
        body(job(images=(link,)))
    assert not CAPABILITIES.accepts_link(link)
    assert CAPABILITIES.accepts_link("https://cdn.example/a.png")


def test_the_fingerprint_ignores_the_route_but_not_the_model() -> None:
    provider = OpenAIChatProvider(URL)
    a = provider.prepare(job(), SourceCache()).fingerprint
    b = provider.prepare(job(model="google/gemini-3-pro-image-preview"), SourceCache()).fingerprint
    assert a != b
    assert a == provider.prepare(job(), SourceCache()).fingerprint


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("https://openrouter.ai/api/v1", "https://openrouter.ai/api/v1/chat/completions"),
        ("https://host/v1/", "https://host/v1/chat/completions"),
        ("https://host/v1/chat/completions", "https://host/v1/chat/completions"),
        ("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1/chat/completions"),
    ],
)
def test_the_endpoint_is_the_base_url_and_chat_completions(base: str, url: str) -> None:
    assert chat_url(base) == url


@pytest.mark.parametrize("base", [None, "", "  ", "openrouter.ai/api/v1", "ftp://host/v1"])
def test_a_missing_or_odd_base_url_is_a_usage_error(base: str | None) -> None:
    with pytest.raises(UsageError, match="--base-url"):
        chat_url(base)


async def test_the_key_travels_only_as_a_bearer_token() -> None:
    auth = ApiKeyAuth(ApiKey("sk-or-v1-secret", "NANOBATCH_GATEWAY_KEY"), AuthStyle.BEARER)
    credentials = await auth.credentials()
    assert dict(credentials.headers) == {"authorization": "Bearer sk-or-v1-secret"}
    assert not credentials.params
    assert "secret" not in repr(auth) + repr(credentials)


def test_a_tier_goes_as_service_tier_and_leaves_the_fingerprint_alone() -> None:
    provider = OpenAIChatProvider(URL)
    standard = provider.prepare(job(), SourceCache())
    flex = provider.prepare(job(tier=Tier.FLEX), SourceCache())
    assert json.loads(flex.body)["service_tier"] == "flex"
    assert flex.fingerprint == standard.fingerprint  # a resend at standard is the same request
    assert (flex.tier, flex.timeout_s) == (Tier.FLEX, FLEX_TIMEOUT_S)
    assert (
        json.loads(provider.prepare(job(tier=Tier.PRIORITY), SourceCache()).body)["service_tier"]
        == "priority"
    )
