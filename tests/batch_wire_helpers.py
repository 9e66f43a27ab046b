"""Helpers for the tests of the Batch API client (``providers.gemini.batch``): a
``GeminiBatch`` and an ``HttpClient`` on an in-process emulator, request files, and a transport
that plays another host."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson

from pipeline.core.config import ApiKey, AuthStyle
from pipeline.emulator import EmulatorApp, EmulatorConfig, EmulatorTransport, create_app
from pipeline.providers.auth import ApiKeyAuth
from pipeline.providers.base import PreparedRequest
from pipeline.providers.gemini.batch.route import GeminiBatch
from pipeline.providers.gemini.provider import GeminiProvider
from pipeline.providers.http import HttpClient, new_http_client
from tests.emulator.emulator_helpers import FLASH_31, body, config

KEY = "test-key-0123456789"
BASE = "http://emulator"


def batch_config(**overrides: Any) -> EmulatorConfig:
    """Compact images, a key the emulator checks, and whatever the test adds."""
    return dataclasses.replace(config(api_key=KEY), **overrides)


@asynccontextmanager
async def wire(
    emulator_config: EmulatorConfig | None = None,
    *,
    style: AuthStyle = AuthStyle.HEADER,
    transport: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport] | None = None,
    **route: Any,
) -> AsyncIterator[tuple[GeminiBatch, HttpClient, EmulatorApp]]:
    """The Gemini provider's batch route on an in-process emulator; ``transport`` wraps the
    emulator's (a test playing another host)."""
    app = create_app(emulator_config or batch_config())
    inner: httpx.AsyncBaseTransport = EmulatorTransport(app)
    http = new_http_client(transport(inner) if transport else inner, 4)
    provider = GeminiProvider(base_url=BASE, auth=ApiKeyAuth(ApiKey(KEY, "test"), style))
    batch = provider.batch_route()
    assert isinstance(batch, GeminiBatch)
    async with http:
        yield dataclasses.replace(batch, **route), HttpClient(http), app


def prepared(prompt: str, *, model: str = FLASH_31, **request: Any) -> PreparedRequest:
    """What the provider prepares for an online call of ``prompt``."""
    data = orjson.dumps(body(prompt, **request))
    url = f"{BASE}/v1beta/models/{model}:generateContent"
    return PreparedRequest(model, url, data, "fp", 60.0, len(data))


def request_file(
    batch: GeminiBatch, path: Path, prompts: Sequence[str], **request: Any
) -> list[str]:
    """A JSONL request file, one line per prompt (keys ``row-i``); the keys."""
    keys = [f"row-{i}" for i in range(len(prompts))]
    with path.open("wb") as out:
        for key, prompt in zip(keys, prompts, strict=True):
            out.write(batch.request_line(key, prepared(prompt, **request)))
    return keys


def stats(app: EmulatorApp) -> dict[str, Any]:
    found: dict[str, Any] = app.stats_snapshot()
    return found
