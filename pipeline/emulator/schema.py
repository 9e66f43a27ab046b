"""The request schema as far as the emulator checks it, and the request fingerprint.

Field names are camelCase, the JSON names of Google's protos; ``camel`` maps the snake_case
spellings (the protos' own field names) onto them, as Google's proto-JSON parser accepts both.
The fingerprint hashes the model and the canonical body (keys camelCased, sorted), so the same
request spelled either way is the same request. It leaves out ``serviceTier``: a Flex request
resent at the standard tier is the same request, and paying for both is a billed duplicate.
A body that breaks the schema raises ``Invalid`` with the 400 Google answers (``known_fields``,
``bad_value``).
"""

from __future__ import annotations

import hashlib
import json

from pipeline.emulator.errors import ApiError, invalid_argument

TOP = frozenset(
    {
        "contents",
        "systemInstruction",
        "generationConfig",
        "safetySettings",
        "tools",
        "toolConfig",
        "cachedContent",
        "labels",
        "serviceTier",
        "continuationToken",
        "store",
        "model",
    }
)
VERTEX_TOP = TOP | {"modelArmorConfig"}
GENERATION_CONFIG = frozenset(
    {
        "stopSequences",
        "responseMimeType",
        "responseSchema",
        "responseJsonSchema",
        "responseModalities",
        "candidateCount",
        "maxOutputTokens",
        "temperature",
        "topP",
        "topK",
        "seed",
        "presencePenalty",
        "frequencyPenalty",
        "responseLogprobs",
        "logprobs",
        "enableEnhancedCivicAnswers",
        "speechConfig",
        "thinkingConfig",
        "imageConfig",
        "mediaResolution",
        "audioTimestamp",
        "routingConfig",
        "modelSelectionConfig",
        "audioTranscriptionConfig",
    }
)
IMAGE_CONFIG = frozenset({"aspectRatio", "imageSize"})
# Vertex AI's ImageConfig has a few more knobs the Gemini API refuses.
VERTEX_IMAGE_CONFIG = IMAGE_CONFIG | {
    "personGeneration",
    "prominentPeople",
    "outputMimeType",
    "outputCompressionQuality",
    "imageOutputOptions",
}
CONTENT = frozenset({"role", "parts"})
PART_DATA = frozenset(
    {
        "text",
        "inlineData",
        "fileData",
        "functionCall",
        "functionResponse",
        "executableCode",
        "codeExecutionResult",
        "toolCall",
        "toolResponse",
    }
)
PART = PART_DATA | {
    "thought",
    "thoughtSignature",
    "videoMetadata",
    "mediaResolution",
    "partMetadata",
}
BLOB = frozenset({"mimeType", "data", "displayName"})
FILE_DATA = frozenset({"mimeType", "fileUri", "displayName"})
# Values that are free-form maps: their keys are the user's, never renamed.
_FREEFORM = frozenset(
    {"labels", "responseSchema", "responseJsonSchema", "parametersJsonSchema", "args", "response"}
)


def camel(key: str) -> str:
    """``generation_config`` -> ``generationConfig``; camelCase names pass through."""
    if "_" not in key:
        return key
    head, *rest = key.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def canonical(value: object) -> object:
    """The body with every schema key camelCased (free-form maps untouched)."""
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, item in value.items():
            name = camel(key)
            out[name] = item if name in _FREEFORM else canonical(item)
        return out
    if isinstance(value, list):
        return [canonical(item) for item in value]
    return value


def fingerprint(model_id: str, body: object) -> bytes:
    document = canonical(body)
    if isinstance(document, dict):
        document.pop("serviceTier", None)
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(model_id.encode() + b"\n" + text.encode()).digest()


class Invalid(Exception):
    """A body Google would refuse: ``error`` is its 400."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


def snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


def known_fields(obj: object, allowed: frozenset[str], path: str) -> dict[str, object]:
    """An object's fields by camelCase name; unknown names get Google's 400."""
    if not isinstance(obj, dict):
        where = f"'{path}'" if path else "the request"
        raise Invalid(
            invalid_argument(f"Invalid JSON payload received. Expected an object at {where}.")
        )
    out: dict[str, object] = {}
    for key, value in obj.items():
        name = camel(key)
        if name not in allowed:
            at = f" at '{path}'" if path else ""
            message = f'Invalid JSON payload received. Unknown name "{key}"{at}: Cannot find field.'
            raise Invalid(invalid_argument(message, path))
        out[name] = value
    return out


def bad_value(path: str, proto_type: str, value: object) -> Invalid:
    shown = value if isinstance(value, str) else json.dumps(value)
    return Invalid(invalid_argument(f"Invalid value at '{path}' ({proto_type}), {shown}", path))
