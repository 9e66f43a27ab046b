"""Catalogue rows: templates, names, sizes, sampling settings, links, metadata, limits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pipeline.core.models import MODELS, map_size
from pipeline.core.types import InvalidRow, Job
from pipeline.plan.names import output_name, safe_name
from pipeline.plan.rows import Defaults, RowResolver
from pipeline.plan.sources import MAX_IMAGE_BYTES, SourceCache
from pipeline.providers.gemini.provider import GeminiProvider
from tests.helpers import make_image

FLASH = "gemini-3.1-flash-image-preview"


def resolve(tmp_path: Path, row: dict[str, Any], **defaults: Any) -> Job | InvalidRow:
    settings: dict[str, Any] = {"model": FLASH, "image_size": None, "aspect_ratio": None}
    settings.update(defaults)
    return RowResolver(tmp_path, Defaults(**settings)).resolve("r1", 7, row)


def job(tmp_path: Path, row: dict[str, Any], **defaults: Any) -> Job:
    result = resolve(tmp_path, row, **defaults)
    assert isinstance(result, Job), result
    return result


def test_prompt_template_is_filled_from_columns(tmp_path: Path) -> None:
    row = {"title": "canvas sneaker", "colour": "red"}
    made = job(tmp_path, row, prompt_template="Studio photo of {title} in {colour}")
    assert made.prompt == "Studio photo of canvas sneaker in red"


def test_an_empty_template_value_makes_the_row_invalid(tmp_path: Path) -> None:
    result = resolve(tmp_path, {"title": "x", "colour": ""}, prompt_template="{title} {colour}")
    assert isinstance(result, InvalidRow)
    assert result.field == "colour"


def test_name_template_gives_sanitised_output_names(tmp_path: Path) -> None:
    made = job(tmp_path, {"prompt": "p", "sku": "AB/12", "variant": "red shoe"},
               name_template="{sku}-{variant}")  # fmt: skip
    assert made.output_name == "AB_12-red_shoe"
    assert made.output_stem == "AB_12-red_shoe"
    assert safe_name("../../etc/passwd") == "etc_passwd"
    assert output_name({"output_name": " hero shot "}, None) == "hero_shot"


def test_other_columns_are_carried_as_metadata(tmp_path: Path) -> None:
    made = job(tmp_path, {"prompt": "p", "sku": "SKU-1", "price": 9.5, "empty": ""})
    assert json.loads(made.metadata or "") == {"price": 9.5, "sku": "SKU-1"}


@pytest.mark.parametrize(
    ("size", "model", "image_size", "ratio"),
    [
        ("1024x1024", FLASH, "1K", "1:1"),
        ("1376x768", FLASH, "1K", "16:9"),
        ("4096X4096", FLASH, "4K", "1:1"),
        ("512x512", FLASH, "512", "1:1"),
        ("800 x 1000", "gemini-3-pro-image-preview", "1K", "4:5"),
        ("1344x768", "gemini-2.5-flash-image", None, "16:9"),
    ],
)
def test_size_maps_to_image_size_and_aspect_ratio(
    tmp_path: Path, size: str, model: str, image_size: str | None, ratio: str
) -> None:
    made = job(tmp_path, {"prompt": "p", "size": size, "model": model})
    assert (made.image_size, made.aspect_ratio) == (image_size, ratio)


def test_an_inexact_size_warns_and_exact_sizes_do_not(tmp_path: Path) -> None:
    resolver = RowResolver(tmp_path, Defaults(FLASH, None, None))
    resolver.resolve("a", 1, {"prompt": "p", "size": "1024x1024"})
    assert resolver.warning_count == 0
    resolver.resolve("b", 2, {"prompt": "p", "size": "1920x1080"})
    assert resolver.warning_count == 1
    assert "1376x768" in resolver.warnings[0].message


def test_size_is_never_sent(tmp_path: Path) -> None:
    made = job(tmp_path, {"prompt": "p", "size": "1920x1080"})
    body = json.loads(GeminiProvider().prepare(made, SourceCache()).body)
    assert "size" not in json.dumps(body["generationConfig"]).replace("imageSize", "")


def test_sampling_settings_and_system_instruction_are_sent(tmp_path: Path) -> None:
    made = job(tmp_path, {"prompt": "p", "temperature": "0.4", "seed": "7",
                          "system_instruction": "House style: soft light"})  # fmt: skip
    body = json.loads(GeminiProvider().prepare(made, SourceCache()).body)
    assert body["generationConfig"]["temperature"] == 0.4
    assert body["generationConfig"]["seed"] == 7
    assert body["systemInstruction"] == {"parts": [{"text": "House style: soft light"}]}


def test_links_are_sent_as_file_data_and_files_inline(tmp_path: Path) -> None:
    make_image(tmp_path / "a.png")
    row = {"prompt": "p", "images": '["a.png", "gs://bucket/ref.jpg", "https://cdn.x/y.webp"]'}
    body = json.loads(GeminiProvider().prepare(job(tmp_path, row), SourceCache()).body)
    parts = body["contents"][0]["parts"]
    assert "inlineData" in parts[0]
    assert parts[1] == {"fileData": {"mimeType": "image/jpeg", "fileUri": "gs://bucket/ref.jpg"}}
    assert parts[2]["fileData"]["mimeType"] == "image/webp"


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        ({"prompt": "p", "size": "big"}, "size", "WIDTHxHEIGHT"),
        ({"prompt": "p", "temperature": "hot"}, "temperature", "not a number"),
        ({"prompt": "p", "temperature": "3"}, "temperature", "outside"),
        ({"prompt": "p", "seed": "1.5"}, "seed", "whole number"),
        ({"prompt": "p", "images": "ftp://x/y.png"}, "images", "http(s)"),
        ({"prompt": "p", "images": "[not json"}, "images", "JSON"),
        ({"prompt": "p", "output_name": "///"}, "output_name", "empty"),
    ],
)
def test_bad_catalogue_values_are_invalid(
    tmp_path: Path, row: dict[str, Any], field: str, words: str
) -> None:
    result = resolve(tmp_path, row)
    assert isinstance(result, InvalidRow)
    assert (result.field, words in result.reason) == (field, True)


def test_fit_images_downscales_an_oversized_photo_instead_of_rejecting_it(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    # Stored, not deflated: 7.7 MB of pixels, just over the limit, without the cost of
    # compressing (and decoding) a bigger photo of noise.
    Image.effect_noise((1600, 1600), 120).convert("RGB").save(big, "PNG", compress_level=0)
    assert big.stat().st_size > MAX_IMAGE_BYTES
    assert isinstance(resolve(tmp_path, {"prompt": "p", "images": "big.png"}), InvalidRow)
    made = job(tmp_path, {"prompt": "p", "images": "big.png"}, fit_images=True)
    request = GeminiProvider(fit_images=True).prepare(made, SourceCache())
    inline = json.loads(request.body)["contents"][0]["parts"][0]["inlineData"]
    assert inline["mimeType"] == "image/jpeg"
    assert len(inline["data"]) * 3 / 4 <= MAX_IMAGE_BYTES


def test_map_size_picks_the_nearest_shape_then_the_nearest_area() -> None:
    flash = MODELS[FLASH]
    assert map_size(flash, 3000, 1000).aspect_ratio == "21:9"
    assert map_size(flash, 600, 600).image_size == "512"
    assert map_size(flash, 2048, 2048).image_size == "2K"
