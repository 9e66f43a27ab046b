"""An image comes only from image parts; links in an answer are followed only when asked.

On the native protocol text is the model talking: a link in it (a stranger's picture, a
refusal's policy URL) is never the row's output. ``--follow-image-links`` is for gateways that
answer with links: fetched without any credential, kept only if it decodes, and a failed
fetch is possibly billed (the generation was answered).
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from PIL import Image

from pipeline.core.clock import VirtualClock
from pipeline.core.types import OutcomeKind, RawResponse
from pipeline.providers.gemini.classify import classify
from pipeline.run.scheduler import run_manifest
from tests.helpers import TEST_KEY, run_config, write_csv
from tests.test_classify import SETTINGS, assert_well_formed, json_values, response_like, statuses

LINK = "https://img.example/cat.png"


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(out, "PNG")
    return out.getvalue()


def answer(*parts: dict[str, Any]) -> dict[str, Any]:
    content = {"role": "model", "parts": list(parts)}
    return {
        "candidates": [{"content": content, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 40},
    }


def raw(body: dict[str, Any]) -> RawResponse:
    return RawResponse(200, {}, json.dumps(body).encode())


TEXT_WITH_LINK = {"text": f"here is one I found: {LINK}"}
MARKDOWN_LINK = {"text": f"![image]({LINK})"}
FILE_DATA = {"fileData": {"mimeType": "image/png", "fileUri": LINK}}


@pytest.mark.parametrize(
    ("part", "reason"),
    [(TEXT_WITH_LINK, "TEXT_ONLY"), (MARKDOWN_LINK, "TEXT_ONLY"), (FILE_DATA, "NO_IMAGE")],
)
def test_a_link_is_not_an_image_by_default(part: dict[str, Any], reason: str) -> None:
    outcome = classify(raw(answer(part)))
    assert (outcome.kind, outcome.reason) == (OutcomeKind.REFUSAL, reason)
    assert outcome.image_urls == ()


@pytest.mark.parametrize("part", [TEXT_WITH_LINK, MARKDOWN_LINK, FILE_DATA])
def test_with_follow_links_a_link_is_the_image_to_fetch(part: dict[str, Any]) -> None:
    outcome = classify(raw(answer(part)), follow_links=True)
    assert outcome.kind is OutcomeKind.SUCCESS
    assert outcome.image_urls == (LINK,)


def test_a_refusal_with_a_policy_link_stays_a_refusal() -> None:
    body = answer({"text": "I can't make that. See https://policies.google.com/terms.png"})
    body["candidates"][0]["finishReason"] = "IMAGE_SAFETY"
    outcome = classify(raw(body))
    assert (outcome.kind, outcome.reason) == (OutcomeKind.REFUSAL, "IMAGE_SAFETY")


def test_inline_images_and_data_uris_are_images_either_way() -> None:
    data = base64.b64encode(png()).decode()
    inline = answer({"inlineData": {"mimeType": "image/png", "data": data}})
    uri = answer({"text": f"data:image/png;base64,{data}"})
    for body in (inline, uri):
        assert classify(raw(body)).kind is OutcomeKind.SUCCESS
        assert classify(raw(body), follow_links=True).images[0].data == png()


class Gateway:
    """A native-protocol gateway answering with a link, and the host the link points at."""

    def __init__(self, part: dict[str, Any], served: bytes) -> None:
        self.part = part
        self.served = served
        self.posts = 0
        self.fetches: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.posts += 1
            return httpx.Response(200, json=answer(self.part))
        self.fetches.append(request)
        return httpx.Response(200, content=self.served, headers={"content-type": "image/png"})


def ledger(out: Path, name: str = "ledger.parquet") -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pq.read_table(out / name).to_pylist()
    return rows


async def run(tmp_path: Path, gateway: Gateway, **overrides: Any) -> list[dict[str, Any]]:
    manifest = write_csv(tmp_path / "m.csv", [{"id": "a", "prompt": "a cat"}])
    config = run_config(manifest, tmp_path / "out", concurrency=1, **overrides)
    await run_manifest(config, httpx.MockTransport(gateway))
    return ledger(tmp_path / "out")


@pytest.mark.parametrize("part", [TEXT_WITH_LINK, FILE_DATA])
async def test_text_that_mentions_a_link_is_not_stored_as_the_image(
    tmp_path: Path, part: dict[str, Any], clock: VirtualClock
) -> None:
    gateway = Gateway(part, png())
    [row] = await run(tmp_path, gateway, clock=clock)  # the extra attempt waits its jitter
    assert (row["status"], row["output_paths"]) == ("refused", [])
    assert gateway.fetches == []  # the link was never fetched
    assert gateway.posts == 2  # TEXT_ONLY / NO_IMAGE keep their one extra attempt
    assert not (tmp_path / "out" / "images").exists() or not any(
        (tmp_path / "out" / "images").iterdir()
    )


@pytest.mark.parametrize("auth", ["header", "bearer", "query"])
async def test_a_followed_link_is_fetched_without_any_credential(tmp_path: Path, auth: str) -> None:
    gateway = Gateway(TEXT_WITH_LINK, png())
    [row] = await run(tmp_path, gateway, follow_image_links=True, auth=auth)
    assert row["status"] == "succeeded"
    assert (tmp_path / "out" / row["output_paths"][0]).read_bytes() == png()
    [fetch] = gateway.fetches
    assert TEST_KEY not in str(fetch.url)
    assert TEST_KEY not in str(fetch.headers)


async def test_a_followed_link_that_is_no_image_fails_the_row_as_possibly_billed(
    tmp_path: Path,
) -> None:
    gateway = Gateway(TEXT_WITH_LINK, b"<html><title>Log in</title></html>")
    [row] = await run(tmp_path, gateway, follow_image_links=True)
    assert (row["status"], row["reason"]) == ("failed", "DOWNLOAD_FAILED")
    assert row["cost_usd"] > 0  # the generation was answered: it may have been billed
    assert gateway.posts == 1  # never paid twice
    [attempt] = ledger(tmp_path / "out", "attempts.parquet")
    assert attempt["possibly_billed"] is True


def test_followed_links_are_only_those_that_look_like_images() -> None:
    body = answer({"text": f"Done: {LINK}?sig=1. Policy: https://policies.google.com/terms"})
    assert classify(raw(body), follow_links=True).image_urls == (f"{LINK}?sig=1",)


@SETTINGS
@given(body=json_values | response_like, status=statuses)
def test_arbitrary_json_never_raises_when_following_links(body: object, status: int) -> None:
    outcome = classify(RawResponse(status, {}, json.dumps(body).encode()), follow_links=True)
    assert_well_formed(outcome, status)
