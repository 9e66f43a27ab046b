"""HTTP 200 bodies: images, refusals and text-only answers, in the Gemini API's camelCase shape.

Image data is spliced into the serialized JSON rather than serialized with it: a 1K image is
over a megabyte of base64, and passing it through ``json.dumps`` would cost more than producing
it. An image answer is returned as the list of its pieces (JSON text, cached base64 pieces),
which the server writes one after the other without ever joining them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import secrets
import time
from dataclasses import dataclass

from pipeline.emulator.faults import unit
from pipeline.emulator.images import Encoded
from pipeline.emulator.specs import FaultKind
from pipeline.emulator.validate import GenerationRequest

# Marks where image data goes in the serialized skeleton; the NUL (escaped by json.dumps) and
# the random part keep it from ever matching text the request supplied.
_SENTINEL = "\x00" + secrets.token_hex(12) + "-"

_BLOCKED_IMAGE = (
    "Unable to show the generated image. The image was filtered out because it violated "
    "Google's Generative AI Prohibited Use policy. You will not be charged for blocked images. "
    "Try rephrasing the prompt."
)
FINISH_MESSAGES: dict[FaultKind, tuple[str, str]] = {
    FaultKind.UNSAFE: ("IMAGE_SAFETY", _BLOCKED_IMAGE),
    FaultKind.PROHIBITED: ("IMAGE_PROHIBITED_CONTENT", _BLOCKED_IMAGE),
    FaultKind.RECITATION: (
        "IMAGE_RECITATION",
        "Unable to show the generated image. The image was filtered out because it may resemble "
        "content from protected sources. You will not be charged for blocked images. Try "
        "rephrasing the prompt.",
    ),
    FaultKind.IMAGE_OTHER: (
        "IMAGE_OTHER",
        "Unable to show the generated image. The model could not generate an image for this "
        "prompt. You will not be charged for blocked images. Try rephrasing the prompt.",
    ),
}
NO_IMAGE_TEXT = (
    "I'm unable to create that image. I can't generate images for this request, but I'm happy "
    "to help with a different description."
)


@dataclass(frozen=True, slots=True)
class Answer:
    """Per-response facts that are not a function of the request."""

    seed: int
    vertex: bool
    response_id: str
    traffic_type: str = "ON_DEMAND"  # Vertex's usageMetadata.trafficType
    service_tier: str | None = None  # the Gemini API's usageMetadata.serviceTier, when asked


def new_answer(
    seed: int, *, vertex: bool, traffic_type: str = "ON_DEMAND", service_tier: str | None = None
) -> Answer:
    return Answer(seed, vertex, secrets.token_urlsafe(17), traffic_type, service_tier)


def _tokens(chars: int) -> int:
    return max(1, math.ceil(chars / 4))


def _prompt_usage(request: GenerationRequest) -> tuple[int, list[dict[str, object]]]:
    text = _tokens(request.text_chars)
    details: list[dict[str, object]] = [{"modality": "TEXT", "tokenCount": text}]
    images = len(request.images) * request.model.input_image_tokens
    if images:
        details.append({"modality": "IMAGE", "tokenCount": images})
    return text + images, details


def prompt_tokens(request: GenerationRequest) -> int:
    """The prompt's token count (text and input images), as usageMetadata reports it."""
    return _prompt_usage(request)[0]


def thoughts_tokens(request: GenerationRequest, seed: int) -> int:
    return 100 + int(unit(seed, "thoughts", request.fingerprint) * 300)


def _usage(
    request: GenerationRequest,
    answer: Answer,
    *,
    candidates: list[dict[str, object]] | None,
    thoughts: int,
) -> dict[str, object]:
    prompt, prompt_details = _prompt_usage(request)
    usage: dict[str, object] = {"promptTokenCount": prompt}
    total = prompt + thoughts
    if candidates is not None:
        count = sum(int(str(d["tokenCount"])) for d in candidates)
        usage["candidatesTokenCount"] = count
        total += count
    usage["totalTokenCount"] = total
    usage["promptTokensDetails"] = prompt_details
    if candidates:
        usage["candidatesTokensDetails"] = candidates
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    if answer.vertex:
        usage["trafficType"] = answer.traffic_type
    elif answer.service_tier is not None:
        usage["serviceTier"] = answer.service_tier
    return usage


def _envelope(
    request: GenerationRequest, answer: Answer, body: dict[str, object]
) -> dict[str, object]:
    body["modelVersion"] = request.model_id
    if answer.vertex:
        body["createTime"] = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    body["responseId"] = answer.response_id
    return body


def _words(prompt: str, limit: int) -> str:
    words = prompt.split()
    return " ".join(words[:limit]) + (" ..." if len(words) > limit else "")


def thought_signature(request: GenerationRequest) -> str:
    raw = b"".join(hashlib.sha256(request.fingerprint + bytes([i])).digest() for i in range(6))
    return base64.b64encode(raw).decode()


def _dumps(body: dict[str, object]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _spliced(body: dict[str, object], images: list[Encoded]) -> list[bytes]:
    text = _dumps(body)
    pieces: list[bytes] = []
    for i, data in enumerate(images):
        marker = json.dumps(f"{_SENTINEL}{i}").encode()
        before, _, text = text.partition(marker)
        pieces += [before, b'"', *data, b'"']
    pieces.append(text)
    return pieces


def success(
    request: GenerationRequest, answer: Answer, image: Encoded, thought_image: Encoded | None
) -> list[bytes]:
    """An image answer; ``image`` and ``thought_image`` are base64 pieces."""
    mime = request.mime_type
    parts: list[dict[str, object]] = []
    images: list[Encoded] = []  # in the order their parts appear, as _spliced splices them
    thoughts = 0
    if request.model.thinks:
        thoughts = thoughts_tokens(request, answer.seed)
        plan = (
            "**Composing the image**\n\nI'm planning a "
            f'{request.aspect_ratio} picture of "{_words(request.prompt, 12)}", settling the '
            "layout, lighting and palette before rendering the final version."
        )
        parts.append({"text": plan, "thought": True})
        if thought_image is not None:
            draft = {"mimeType": mime, "data": f"{_SENTINEL}{len(images)}"}
            parts.append({"inlineData": draft, "thought": True})
            images.append(thought_image)
    final: dict[str, object] = {
        "inlineData": {"mimeType": mime, "data": f"{_SENTINEL}{len(images)}"}
    }
    images.append(image)
    if request.model.thinks:
        final["thoughtSignature"] = thought_signature(request)
    parts.append(final)
    candidate_tokens: list[dict[str, object]] = [
        {"modality": "IMAGE", "tokenCount": request.model.image_tokens(request.image_size)}
    ]
    if request.want_text:
        caption = f"Here is the image you asked for: {_words(request.prompt, 8)}"
        parts.append({"text": caption})
        candidate_tokens.insert(0, {"modality": "TEXT", "tokenCount": _tokens(len(caption))})
    body = _envelope(
        request,
        answer,
        {
            "candidates": [
                {"content": {"parts": parts, "role": "model"}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": _usage(
                request, answer, candidates=candidate_tokens, thoughts=thoughts
            ),
        },
    )
    return _spliced(body, images)


def blocked(request: GenerationRequest, answer: Answer, reason: str) -> bytes:
    """The prompt was blocked: no candidates, ``promptFeedback.blockReason``, prompt tokens."""
    prompt, details = _prompt_usage(request)
    usage: dict[str, object] = {
        "promptTokenCount": prompt,
        "totalTokenCount": prompt,
        "promptTokensDetails": details,
    }
    body = _envelope(
        request, answer, {"promptFeedback": {"blockReason": reason}, "usageMetadata": usage}
    )
    return _dumps(body)


def image_refused(request: GenerationRequest, answer: Answer, kind: FaultKind) -> bytes:
    """A candidate without an image, its finishReason and finishMessage; 0 candidate tokens."""
    reason, message = FINISH_MESSAGES[kind]
    thoughts = thoughts_tokens(request, answer.seed) if request.model.thinks else 0
    candidate = {
        "content": {"role": "model"},
        "finishReason": reason,
        "index": 0,
        "finishMessage": message,
    }
    usage = _usage(request, answer, candidates=[], thoughts=thoughts)
    usage["candidatesTokenCount"] = 0
    body = _envelope(request, answer, {"candidates": [candidate], "usageMetadata": usage})
    return _dumps(body)


def text_only(request: GenerationRequest, answer: Answer) -> bytes:
    """The model answered in words instead of an image (finishReason STOP)."""
    thoughts = thoughts_tokens(request, answer.seed) if request.model.thinks else 0
    candidate = {
        "content": {"parts": [{"text": NO_IMAGE_TEXT}], "role": "model"},
        "finishReason": "STOP",
        "index": 0,
    }
    tokens: list[dict[str, object]] = [
        {"modality": "TEXT", "tokenCount": _tokens(len(NO_IMAGE_TEXT))}
    ]
    usage = _usage(request, answer, candidates=tokens, thoughts=thoughts)
    body = _envelope(request, answer, {"candidates": [candidate], "usageMetadata": usage})
    return _dumps(body)
