"""Job -> generateContent request body (native Gemini format).

Pure apart from reading source images through the cache. Images go first as ``inlineData``,
the prompt last; ``imageConfig`` carries only values the model accepts (the manifest layer has
already rejected the others).
"""

from __future__ import annotations

import mimetypes
from typing import Any

import orjson

from pipeline.core.types import Job, Tier
from pipeline.plan.sources import SourceCache
from pipeline.providers.common import image_config as route_image_config
from pipeline.providers.inputs import load_inputs


def generation_config(job: Job) -> dict[str, Any]:
    """The ``generationConfig`` for a job. TEXT is asked for so refusals come with the reason."""
    image_config = route_image_config(job, "aspectRatio", "imageSize")
    config: dict[str, Any] = {"responseModalities": ["TEXT", "IMAGE"]}
    if image_config:
        config["imageConfig"] = image_config
    if job.temperature is not None:
        config["temperature"] = job.temperature
    if job.seed is not None:
        config["seed"] = job.seed
    return config


def _uri_mime(uri: str) -> str:
    """fileData needs a MIME type; links are not fetched here, so go by the extension."""
    guessed, _ = mimetypes.guess_type(uri.split("?", 1)[0])
    return guessed if guessed and guessed.startswith("image/") else "image/jpeg"


def build_body(job: Job, sources: SourceCache, *, fit_images: bool) -> tuple[bytes, list[str]]:
    """The request body, and the digests of its source images (for the fingerprint: each file
    is hashed as it is read). Raises SourceImageError if a source image went bad meanwhile."""
    inputs, digests = load_inputs(job, sources, fit_images=fit_images)
    parts: list[dict[str, Any]] = [
        {"fileData": {"mimeType": _uri_mime(source), "fileUri": source}}
        if isinstance(source, str)
        else {"inlineData": {"mimeType": source.mime_type, "data": source.b64}}
        for source in inputs
    ]
    parts.append({"text": job.prompt})
    body: dict[str, Any] = {"contents": [{"role": "user", "parts": parts}]}
    if job.system_instruction:
        body["systemInstruction"] = {"parts": [{"text": job.system_instruction}]}
    body["generationConfig"] = generation_config(job)
    if job.tier is not Tier.STANDARD:
        # The Gemini API's field (the SDK's ``service_tier``); standard is the default, not sent.
        body["serviceTier"] = job.tier.value
    return orjson.dumps(body), digests  # compact, and fast on bodies carrying base64 photos
