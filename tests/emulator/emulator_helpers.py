"""Shared helpers for the emulator tests: an in-process client, request bodies, fake time, an
RSA key for service-account files, a module imported on first use."""

from __future__ import annotations

import base64
import dataclasses
import functools
import importlib
import io
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from PIL import Image

from pipeline.emulator import EmulatorApp, EmulatorConfig, EmulatorTransport, Payload, create_app

FLASH_25 = "gemini-2.5-flash-image"
PRO_3 = "gemini-3-pro-image-preview"
FLASH_31 = "gemini-3.1-flash-image-preview"
KEY = "test-key"


class Lazy:
    """A module imported when first used: google-genai takes half a CPU-second to import, which
    every pytest-xdist worker paid collecting the SDK tests, though one worker runs them."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("_"):  # pytest looks for its markers on everything collected
            raise AttributeError(attribute)
        return getattr(importlib.import_module(self._name), attribute)


class FakeClock:
    """An injectable clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingSleep:
    """An injectable sleep that returns at once and remembers what it was asked for."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class BlockingSleep:
    """An injectable sleep that never returns; ``entered`` is set once something sleeps."""

    def __init__(self) -> None:
        self.entered = anyio.Event()

    async def __call__(self, seconds: float) -> None:
        self.entered.set()
        await anyio.sleep_forever()


def config(**overrides: Any) -> EmulatorConfig:
    """The test default: compact images (fast), otherwise EmulatorConfig's defaults."""
    return dataclasses.replace(EmulatorConfig(payload=Payload.COMPACT), **overrides)


@asynccontextmanager
async def emulator(
    emulator_config: EmulatorConfig | None = None,
) -> AsyncIterator[tuple[httpx.AsyncClient, EmulatorApp]]:
    app = create_app(emulator_config or config())
    transport = EmulatorTransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as client:
        yield client, app


def png_b64(width: int, height: int, fmt: str = "PNG") -> str:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, fmt)
    return base64.b64encode(out.getvalue()).decode()


def body(
    prompt: str = "a red fox in the snow",
    *,
    images: Sequence[tuple[int, int]] = (),
    aspect_ratio: str | None = None,
    image_size: str | None = None,
    modalities: Sequence[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A generateContent body: input images first, text last, as the docs recommend."""
    parts: list[dict[str, Any]] = [
        {"inlineData": {"mimeType": "image/png", "data": png_b64(w, h)}} for w, h in images
    ]
    parts.append({"text": prompt})
    generation: dict[str, Any] = {}
    image_config = {
        k: v for k, v in (("aspectRatio", aspect_ratio), ("imageSize", image_size)) if v
    }
    if image_config:
        generation["imageConfig"] = image_config
    if modalities is not None:
        generation["responseModalities"] = list(modalities)
    result: dict[str, Any] = {"contents": [{"role": "user", "parts": parts}]}
    if generation:
        result["generationConfig"] = generation
    result.update(extra)
    return result


async def generate(
    client: httpx.AsyncClient,
    request: dict[str, Any] | bytes,
    *,
    model: str = FLASH_31,
    key: str | None = KEY,
    version: str = "v1beta",
) -> httpx.Response:
    headers = {"x-goog-api-key": key} if key is not None else {}
    path = f"/{version}/models/{model}:generateContent"
    if isinstance(request, bytes):
        headers["content-type"] = "application/json"
        return await client.post(path, content=request, headers=headers)
    return await client.post(path, json=request, headers=headers)


def image_parts(answer: dict[str, Any], *, thought: bool = False) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = answer["candidates"][0]["content"].get("parts", [])
    return [p for p in parts if "inlineData" in p and bool(p.get("thought")) == thought]


def decode(part: dict[str, Any]) -> Image.Image:
    picture = Image.open(io.BytesIO(base64.b64decode(part["inlineData"]["data"])))
    picture.load()
    return picture


@functools.cache
def rsa_private_key() -> str:
    """A PEM RSA key for service-account files (made once: a 2048-bit key takes a while)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem.decode()
