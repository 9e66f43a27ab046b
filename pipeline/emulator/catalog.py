"""Unbilled reads of a model's metadata, which a client makes to check its route before it
spends anything: ``GET /{v}/models/{m}`` on the Gemini API, ``GET /{v}/projects/{p}/locations/
{l}/publishers/google/models/{m}`` and ``GET /{v}/publishers/google/models/{m}`` on Vertex.
They pass the same key, token, project and location checks as a generation, so a wrong one
shows here first. A chat gateway's model list (``GET /v1/models``) is one too. Counted in
``model_reads``, not in ``requests``.
"""

from __future__ import annotations

from pipeline.emulator import errors, vertex
from pipeline.emulator.errors import ApiError
from pipeline.emulator.models import MODELS, ModelInfo, find_model
from pipeline.emulator.routes import ApiRoute

_INPUT_TOKEN_LIMIT = {"gemini-2.5-flash-image": 32_768}


def _gemini_model(model_id: str, model: ModelInfo) -> dict[str, object]:
    return {
        "name": f"models/{model_id}",
        "baseModelId": model_id,
        "version": "001",
        "displayName": f"Nano Banana ({model.short_name} Image)",
        "description": f"Gemini {model.short_name} Image, as served by the nanobatch emulator.",
        "inputTokenLimit": _INPUT_TOKEN_LIMIT.get(model.name, 65_536),
        "outputTokenLimit": 32_768,
        "supportedGenerationMethods": ["generateContent", "countTokens", "batchGenerateContent"],
        "temperature": 1.0,
        "topP": 0.95,
        "topK": 64,
        "maxTemperature": 2.0,
        "thinking": model.thinks,
    }


def _publisher_model(model_id: str) -> dict[str, object]:
    return {
        "name": f"publishers/google/models/{model_id}",
        "versionId": "default",
        "openSourceCategory": "PROPRIETARY",
        "launchStage": "PUBLIC_PREVIEW" if model_id.endswith("-preview") else "GA",
    }


def chat_models() -> dict[str, object]:
    """A chat gateway's ``GET /v1/models``: OpenAI's list, each model under its bare id and its
    ``google/`` id (the emulator's gateway takes both, as gateways variously name them)."""
    ids = [f"{vendor}{model_id}" for model_id in MODELS for vendor in ("google/", "")]
    data = [{"id": i, "object": "model", "created": 1764547200, "owned_by": "google"} for i in ids]
    return {"object": "list", "data": data}


def read(route: ApiRoute) -> dict[str, object] | ApiError:
    """The model's resource, or the 404 this route answers for it."""
    model_id = route.model.removeprefix("models/")
    model = find_model(model_id)
    if model is None or (route.vertex and not vertex.serves(route, model_id)):
        return errors.model_not_found(model_id, route.version, route.vertex_name)
    if route.vertex:
        return _publisher_model(model_id)
    return _gemini_model(model_id, model)
