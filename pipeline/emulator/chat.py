"""The OpenAI-compatible chat gateway's request side (``POST /v1/chat/completions``, also
``/api/v1/...``): its key, its errors, and the translation of a chat request into the Gemini
request the gateway would send upstream, which then goes through the same checks, faults and
billing as the native routes.

Request (OpenRouter, Vercel AI Gateway, LiteLLM, new-api): ``model`` (``google/`` prefix
optional), ``messages`` whose ``content`` is a string or parts (``text``; ``image_url`` with a
``data:`` URL, or an ``https://`` URL passed on as a file link), ``modalities``,
``image_config: {aspect_ratio, image_size}``, and optionally ``service_tier`` (``flex``,
``priority``, ``default``/``auto``). Real gateways may drop OpenAI's ``size`` and ``n``
silently; the emulator refuses both, so a client that sends them is caught.

Errors follow one of two gateway conventions (``--chat-errors``): ``raw`` (OpenRouter: Google's
error body as a string in ``error.metadata.raw``) or ``upstream`` (new-api:
``{"error": {"message", "type": "upstream_error", "code"}}``); ``mixed`` draws one per request.
The HTTP status is Google's. ``#402`` in the prompt is a gateway out of credit.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.emulator.errors import ApiError
from pipeline.emulator.faults import unit

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)$", re.DOTALL)
_OUT_OF_CREDIT = re.compile(r"#402(?![\w])")
_ROLES = {"user": "user", "assistant": "model"}
_TIERS = {"flex": "flex", "priority": "priority", "default": None, "auto": None}
_GENERATION = {"temperature": "temperature", "top_p": "topP", "max_tokens": "maxOutputTokens",
               "max_completion_tokens": "maxOutputTokens", "seed": "seed"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class GatewayError:
    status: int
    body: dict[str, object]

    def encoded(self) -> tuple[int, bytes]:
        return self.status, json.dumps(self.body).encode()


def gateway_error(status: int, message: str, code: object = None) -> GatewayError:
    return GatewayError(
        status, {"error": {"message": message, "code": status if code is None else code}}
    )


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A chat request translated: the model id and the Gemini body sent upstream."""

    model: str  # as the client named it (``google/...``), echoed in the answer
    model_id: str  # without the ``google/`` prefix
    gemini_body: bytes
    tier_asked: bool


def authenticate(bearer: str, api_key: str | None) -> GatewayError | None:
    if not bearer:
        return gateway_error(401, "No auth credentials found")
    if api_key is not None and bearer != api_key:
        return gateway_error(401, "User not found.")
    return None


def out_of_credit(prompt: str) -> GatewayError | None:
    if "#402" not in prompt or not _OUT_OF_CREDIT.search(prompt):
        return None
    return gateway_error(
        402,
        "Insufficient credits. This account never purchased credits. Make sure your key is on "
        "the correct account or org, and if so, purchase more credits.",
    )


def _part(item: object) -> dict[str, object]:
    if isinstance(item, str):
        return {"text": item}
    if not isinstance(item, dict):
        raise ValueError("each content part must be an object")
    kind = item.get("type")
    if kind == "text" and isinstance(item.get("text"), str):
        return {"text": item["text"]}
    if kind == "image_url":
        ref = item.get("image_url")
        url = ref.get("url") if isinstance(ref, dict) else ref
        if not isinstance(url, str):
            raise ValueError("image_url.url must be a string")
        match = _DATA_URL.match(url)
        if match is not None:
            return {"inlineData": {"mimeType": match["mime"], "data": match["data"]}}
        if url.startswith(("https://", "http://", "gs://")):
            return {"fileData": {"mimeType": "image/jpeg", "fileUri": url}}
        raise ValueError("image_url.url must be a data: URL or a link")
    raise ValueError(f"unsupported content part type {kind!r}")


def translate(body: bytes) -> ChatRequest | GatewayError:
    """The Gemini request a gateway sends for this chat request, or its 400."""
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return gateway_error(400, "Invalid JSON in request body")
    if not isinstance(document, dict):
        return gateway_error(400, "Request body must be a JSON object")
    model = document.get("model")
    if not isinstance(model, str) or not model:
        return gateway_error(400, "No model specified")
    for name in ("size", "n"):
        if name in document and not (name == "n" and document[name] == 1):
            return gateway_error(
                400, f"Unsupported parameter: '{name}' (Gemini image models take image_config)"
            )
    if document.get("stream"):
        return gateway_error(400, "Streaming is not emulated: send stream=false")
    messages = document.get("messages")
    if not isinstance(messages, list) or not messages:
        return gateway_error(400, "messages must be a non-empty array")
    contents: list[dict[str, object]] = []
    system: list[dict[str, object]] = []
    try:
        for message in messages:
            if not isinstance(message, dict):
                raise ValueError("each message must be an object")
            content = message.get("content")
            parts = [_part(p) for p in (content if isinstance(content, list) else [content])]
            role = message.get("role")
            role = role if isinstance(role, str) else repr(role)
            if role in ("system", "developer"):
                system += parts
            elif role in _ROLES:
                contents.append({"role": _ROLES[role], "parts": parts})
            else:
                raise ValueError(f"unknown message role {role!r}")
    except ValueError as bad:
        return gateway_error(400, f"Invalid messages: {bad}")
    gemini: dict[str, object] = {"contents": contents}
    if system:
        gemini["systemInstruction"] = {"parts": system}
    generation: dict[str, object] = {
        google: document[openai] for openai, google in _GENERATION.items() if openai in document
    }
    modalities = document.get("modalities")
    if isinstance(modalities, list):
        generation["responseModalities"] = [str(m).upper() for m in modalities]
    image_config = document.get("image_config")
    if isinstance(image_config, dict):
        generation["imageConfig"] = image_config  # snake_case keys: Google's parser takes them
    if generation:
        gemini["generationConfig"] = generation
    tier = document.get("service_tier")
    if tier is not None and (not isinstance(tier, str) or tier not in _TIERS):
        return gateway_error(400, f"Invalid service_tier {tier!r}: use flex, priority or default")
    if isinstance(tier, str) and _TIERS.get(tier) is not None:
        gemini["serviceTier"] = _TIERS[tier]
    return ChatRequest(
        model=model,
        model_id=model.removeprefix("google/"),
        gemini_body=json.dumps(gemini).encode(),
        tier_asked="serviceTier" in gemini,
    )


def wrap_google_error(
    convention: str, seed: int, key: bytes
) -> Callable[[ApiError], tuple[int, bytes]]:
    """How a Google error reaches the client through the gateway (``--chat-errors``)."""
    if convention == "mixed":
        draw = unit(seed, "chat-errors", hashlib.sha256(key).digest())
        convention = "raw" if draw < 0.5 else "upstream"

    def render(error: ApiError) -> tuple[int, bytes]:
        if convention == "upstream":
            inner: dict[str, object] = {
                "message": error.message,
                "type": "upstream_error",
                "param": "",
                "code": error.code,
            }
        else:
            raw = error.body().decode()
            inner = {
                "message": "Provider returned error",
                "code": error.code,
                "metadata": {"raw": raw, "provider_name": "Google AI Studio"},
            }
        return error.code, json.dumps({"error": inner}).encode()

    return render
