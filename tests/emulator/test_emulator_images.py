"""Successful answers: real images at the documented size and format, thoughts, usage, text."""

from __future__ import annotations

import base64
import io
import zlib

import pytest
from PIL import Image

from pipeline.emulator import Payload, png
from pipeline.emulator.models import FLASH_25 as FLASH_25_INFO
from pipeline.emulator.models import FLASH_31 as FLASH_31_INFO
from pipeline.emulator.models import PRO_3 as PRO_3_INFO
from pipeline.emulator.models import ModelInfo
from tests.emulator.emulator_helpers import (
    FLASH_25,
    FLASH_31,
    PRO_3,
    body,
    config,
    decode,
    emulator,
    generate,
    image_parts,
)

# Documented sizes (ai.google.dev image-generation): a few per model, including the extremes.
SIZES = [
    (FLASH_25, None, None, (1024, 1024)),
    (FLASH_25, None, "16:9", (1344, 768)),
    (FLASH_25, None, "21:9", (1536, 672)),
    (FLASH_25, None, "2:3", (832, 1248)),
    (PRO_3, None, "16:9", (1376, 768)),
    (PRO_3, "2K", "1:1", (2048, 2048)),
    (PRO_3, "1K", "3:4", (896, 1200)),
    (PRO_3, "2K", "9:16", (1536, 2752)),
    (FLASH_31, "512", "1:1", (512, 512)),
    (FLASH_31, "512", "8:1", (1536, 192)),
    (FLASH_31, "1K", "1:4", (512, 2048)),
    (FLASH_31, "2K", "21:9", (3168, 1344)),
    (FLASH_31, "1K", "4:5", (928, 1152)),
]


@pytest.mark.parametrize(("model", "size", "ratio", "pixels"), SIZES)
async def test_image_decodes_at_the_documented_size(
    model: str, size: str | None, ratio: str | None, pixels: tuple[int, int]
) -> None:
    async with emulator() as (client, _):
        response = await generate(client, body(image_size=size, aspect_ratio=ratio), model=model)
    assert response.status_code == 200
    (part,) = image_parts(response.json())
    picture = decode(part)
    assert picture.size == pixels
    expected = "JPEG" if model == PRO_3 else "PNG"
    assert picture.format == expected
    assert part["inlineData"]["mimeType"] == f"image/{expected.lower()}"


@pytest.mark.parametrize(
    ("info", "size", "pixels"),
    [
        (PRO_3_INFO, "4K", (4096, 4096)),
        (FLASH_31_INFO, "4K", (4096, 4096)),
        (FLASH_31_INFO, "1K", (1024, 1024)),
    ],
)
def test_pixel_table_for_1_1(info: ModelInfo, size: str, pixels: tuple[int, int]) -> None:
    assert info.pixels(size, "1:1") == pixels


def test_every_supported_size_and_ratio_has_pixels_near_the_ratio() -> None:
    for info in (FLASH_25_INFO, PRO_3_INFO, FLASH_31_INFO):
        for size in info.sizes or ("1K",):
            for ratio in info.ratios:
                width, height = info.pixels(size, ratio)
                w, h = (int(x) for x in ratio.split(":"))
                assert abs(width / height - w / h) / (w / h) < 0.08, (info.name, size, ratio)
                assert width % 8 == 0
                assert height % 8 == 0


@pytest.mark.parametrize(
    ("inputs", "model", "pixels"),
    [
        ([(1600, 900)], FLASH_31, (1376, 768)),
        ([(100, 100), (900, 1600)], FLASH_31, (768, 1376)),
        ([(4000, 1000)], FLASH_31, (2048, 512)),
        ([(4000, 1000)], PRO_3, (1584, 672)),
        ([(1200, 900)], FLASH_25, (1184, 864)),
    ],
)
async def test_output_follows_the_last_input_images_ratio(
    inputs: list[tuple[int, int]], model: str, pixels: tuple[int, int]
) -> None:
    async with emulator() as (client, _):
        response = await generate(client, body(images=inputs), model=model)
    (part,) = image_parts(response.json())
    assert decode(part).size == pixels


async def test_explicit_ratio_wins_over_the_input_image() -> None:
    async with emulator() as (client, _):
        response = await generate(client, body(images=[(1600, 900)], aspect_ratio="1:1"))
    assert decode(image_parts(response.json())[0]).size == (1024, 1024)


async def test_realistic_payload_has_real_world_sizes() -> None:
    async with emulator(config(payload=Payload.REALISTIC)) as (client, _):
        flash = await generate(client, body(), model=FLASH_25)
        pro = await generate(client, body(), model=PRO_3)
    png_part = image_parts(flash.json())[0]
    assert decode(png_part).size == (1024, 1024)
    assert 1_000_000 <= len(base64.b64decode(png_part["inlineData"]["data"])) <= 2_000_000
    jpeg_part = image_parts(pro.json())[0]
    assert decode(jpeg_part).format == "JPEG"
    assert len(base64.b64decode(jpeg_part["inlineData"]["data"])) >= 400_000


async def test_compact_payload_is_small() -> None:
    async with emulator() as (client, _):
        response = await generate(client, body(), model=FLASH_25)
    assert len(response.content) < 200_000


async def test_same_request_gives_the_same_picture_and_a_new_response_id() -> None:
    async with emulator() as (client, _):
        first = (await generate(client, body("a blue whale"))).json()
        second = (await generate(client, body("a blue whale"))).json()
        other = (await generate(client, body("a green whale"))).json()
    picture = image_parts(first)[0]["inlineData"]["data"]
    assert picture == image_parts(second)[0]["inlineData"]["data"]
    assert picture != image_parts(other)[0]["inlineData"]["data"]
    assert first["responseId"] != second["responseId"]


async def test_picture_colour_comes_from_the_prompt() -> None:
    async with emulator() as (client, _):
        red = (await generate(client, body("prompt one"))).json()
        blue = (await generate(client, body("prompt two"))).json()
    corner_one = decode(image_parts(red)[0]).convert("RGB").getpixel((0, 0))
    corner_two = decode(image_parts(blue)[0]).convert("RGB").getpixel((0, 0))
    assert corner_one != corner_two


async def test_gemini_3_answers_with_thoughts_and_a_signed_final_image() -> None:
    async with emulator() as (client, _):
        response = await generate(client, body(), model=FLASH_31)
    answer = response.json()
    parts = answer["candidates"][0]["content"]["parts"]
    assert parts[0]["thought"] is True
    assert "text" in parts[0]
    assert parts[1]["thought"] is True
    decode(parts[1])  # the interim image is a real image too
    assert "thoughtSignature" in parts[-1]
    assert not parts[-1].get("thought")
    usage = answer["usageMetadata"]
    assert usage["thoughtsTokenCount"] > 0
    assert usage["candidatesTokenCount"] == 1120
    assert usage["totalTokenCount"] == (
        usage["promptTokenCount"] + usage["candidatesTokenCount"] + usage["thoughtsTokenCount"]
    )
    assert answer["candidates"][0]["finishReason"] == "STOP"


async def test_interim_image_is_a_small_real_image() -> None:
    async with emulator() as (client, _):
        response = await generate(client, body(aspect_ratio="16:9"))
    (thought,) = image_parts(response.json(), thought=True)
    assert decode(thought).size == (1376 // 4, 768 // 4)


async def test_gemini_2_5_does_not_think() -> None:
    async with emulator() as (client, _):
        response = await generate(client, body(), model=FLASH_25)
    answer = response.json()
    parts = answer["candidates"][0]["content"]["parts"]
    assert len(parts) == 1
    assert "thoughtSignature" not in parts[0]
    assert "thoughtsTokenCount" not in answer["usageMetadata"]
    assert answer["usageMetadata"]["candidatesTokenCount"] == 1290


@pytest.mark.parametrize(
    ("model", "size", "tokens"),
    [
        (FLASH_31, "512", 747),
        (FLASH_31, "2K", 1680),
        (FLASH_31, "4K", 2520),
        (PRO_3, "2K", 1120),
        (PRO_3, "4K", 2000),
    ],
)
def test_documented_output_tokens_per_image(model: str, size: str, tokens: int) -> None:
    info = {FLASH_31: FLASH_31_INFO, PRO_3: PRO_3_INFO}[model]
    assert info.image_tokens(size) == tokens


async def test_text_modality_adds_a_text_part_and_its_tokens() -> None:
    async with emulator() as (client, _):
        response = await generate(client, body(modalities=["TEXT", "IMAGE"]), model=FLASH_25)
    answer = response.json()
    parts = answer["candidates"][0]["content"]["parts"]
    assert "inlineData" in parts[0]
    assert "text" in parts[-1]
    modalities = {
        d["modality"]: d["tokenCount"] for d in answer["usageMetadata"]["candidatesTokensDetails"]
    }
    assert modalities["IMAGE"] == 1290
    assert modalities["TEXT"] > 0


async def test_prompt_usage_counts_input_images() -> None:
    async with emulator() as (client, _):
        response = await generate(client, body(images=[(8, 8), (8, 8)]), model=PRO_3)
    details = {
        d["modality"]: d["tokenCount"]
        for d in response.json()["usageMetadata"]["promptTokensDetails"]
    }
    assert details["IMAGE"] == 2 * 560
    assert details["TEXT"] > 0


def test_adler32_combine_matches_zlib() -> None:
    first, second = b"top rows " * 1000, b"the band" * 777
    combined = png.adler32_combine(zlib.adler32(first), zlib.adler32(second), len(second))
    assert combined == zlib.adler32(first + second)


@pytest.mark.parametrize("length", [0, 1, 2, 3, 65534, 65535, 65536, 200_000])
def test_stored_idat_is_a_multiple_of_three_and_decodes(length: int) -> None:
    raw = bytes(i % 251 for i in range(length))
    chunk = png.stored_idat(raw, first=True, final=True)
    assert len(chunk) % 3 == 0
    stream = chunk[8:-4] + zlib.adler32(raw).to_bytes(4, "big")
    assert zlib.decompress(stream) == raw


def test_stored_png_pieces_concatenate_into_a_valid_file() -> None:
    width, height = 37, 23
    rows = [bytes([0, *((x + y) % 5 for x in range(width))]) for y in range(height)]
    top, band, bottom = b"".join(rows[:9]), b"".join(rows[9:14]), b"".join(rows[14:])
    palette = bytes(range(15))
    pieces = [
        png.header(width, height, palette),
        png.stored_idat(top, first=True, final=False),
        png.stored_idat(band, first=False, final=False),
        png.stored_idat(bottom, first=False, final=True),
    ]
    adler = png.adler32_combine(zlib.adler32(top), zlib.adler32(band), len(band))
    adler = png.adler32_combine(adler, zlib.adler32(bottom), len(bottom))
    pieces.append(png.trailer(adler))
    assert all(len(piece) % 3 == 0 for piece in pieces[:-1])
    encoded = b"".join(base64.b64encode(piece) for piece in pieces)
    picture = Image.open(io.BytesIO(base64.b64decode(encoded)))
    picture.load()
    assert picture.size == (width, height)
    assert picture.getpixel((3, 2)) == (3 + 2) % 5
