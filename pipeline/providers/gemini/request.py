"""Job -> generateContent request body (native Gemini format), and the request fingerprint.

Pure apart from reading source images through the cache. Images go first as ``inlineData``,
the prompt last; ``imageConfig`` carries only values the model accepts (the manifest layer has
already rejected the others).
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from typing import Any

import orjson

from pipeline.core.config import RetryConfig
from pipeline.core.models import resolve_model
from pipeline.core.types import Job
from pipeline.plan.rowimages import URI_PREFIXES
from pipeline.plan.sources import (
    MAX_REQUEST_INLINE_BYTES,
    MAX_REQUEST_INLINE_MIB,
    SourceCache,
    SourceImageError,
)


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """A request ready to send."""

    model: str
    body: bytes
    fingerprint: str  # hash of everything that shapes the result; the ledger stores it
    timeout_s: float
    upload_bytes: int


def generation_config(job: Job) -> dict[str, Any]:
    """The ``generationConfig`` for a job. TEXT is asked for so refusals come with the reason."""
    image_config: dict[str, str] = {}
    _, spec = resolve_model(job.model)
    if job.aspect_ratio:
        image_config["aspectRatio"] = job.aspect_ratio
    if job.image_size and (spec is None or spec.image_sizes):
        image_config["imageSize"] = job.image_size
    config: dict[str, Any] = {"responseModalities": ["TEXT", "IMAGE"]}
    if image_config:
        config["imageConfig"] = image_config
    if job.temperature is not None:
        config["temperature"] = job.temperature
    if job.seed is not None:
        config["seed"] = job.seed
    return config


def is_uri(image: str) -> bool:
    return image.startswith(URI_PREFIXES)


def image_digest(image: str, sources: SourceCache) -> str:
    """What identifies a source image in the fingerprint: its bytes, or its link."""
    return f"uri:{image}" if is_uri(image) else sources.digest(image)


def _uri_mime(uri: str) -> str:
    """fileData needs a MIME type; links are not fetched here, so go by the extension."""
    guessed, _ = mimetypes.guess_type(uri.split("?", 1)[0])
    return guessed if guessed and guessed.startswith("image/") else "image/jpeg"


def effective_size(job: Job) -> str:
    """The output size the job will get: its own, else the model's default."""
    if job.image_size:
        return job.image_size
    _, spec = resolve_model(job.model)
    return spec.default_size if spec else "1K"


def fingerprint(job: Job, image_digests: list[str]) -> str:
    """A hash of everything that shapes the request: a change to any of it means a new image.

    Frozen format (a change would make every user's next run regenerate everything): each
    field is ``name:length:value``; optional fields are only included when set, so adding
    one later leaves existing fingerprints unchanged.
    """
    fields = [
        ("model", job.model),
        ("prompt", job.prompt),
        ("image_size", job.image_size or ""),
        ("aspect_ratio", job.aspect_ratio or ""),
        ("images", ",".join(image_digests)),
    ]
    optional = [
        ("system_instruction", job.system_instruction),
        ("temperature", None if job.temperature is None else repr(job.temperature)),
        ("seed", None if job.seed is None else str(job.seed)),
    ]
    fields += [(name, value) for name, value in optional if value is not None]
    canonical = "nanobatch-fp-1|" + "|".join(f"{k}:{len(v)}:{v}" for k, v in fields)
    return hashlib.sha256(canonical.encode()).hexdigest()


def prepare(
    job: Job, sources: SourceCache, retry: RetryConfig, *, fit_images: bool = False
) -> PreparedRequest:
    """Build the request body; raises SourceImageError if a source image went bad meanwhile."""
    parts: list[dict[str, Any]] = []
    digests: list[str] = []
    inline = 0
    for image in job.images:
        if is_uri(image):
            parts.append({"fileData": {"mimeType": _uri_mime(image), "fileUri": image}})
            digests.append(f"uri:{image}")
            continue
        loaded = sources.load(image, fit=fit_images)
        parts.append({"inlineData": {"mimeType": loaded.mime_type, "data": loaded.b64}})
        digests.append(loaded.sha256)
        inline += len(loaded.b64)
    if inline > MAX_REQUEST_INLINE_BYTES:
        raise SourceImageError(
            f"the source images add up to {inline / 2**20:.0f} MiB as base64; a request takes at "
            f"most {MAX_REQUEST_INLINE_MIB} MiB"
        )
    parts.append({"text": job.prompt})
    body: dict[str, Any] = {"contents": [{"role": "user", "parts": parts}]}
    if job.system_instruction:
        body["systemInstruction"] = {"parts": [{"text": job.system_instruction}]}
    body["generationConfig"] = generation_config(job)
    encoded = orjson.dumps(body)  # compact, and fast on bodies carrying base64 photos
    timeout = retry.timeouts_s.get(effective_size(job), max(retry.timeouts_s.values()))
    return PreparedRequest(
        model=job.model,
        body=encoded,
        fingerprint=fingerprint(job, digests),
        timeout_s=timeout,
        upload_bytes=len(encoded),
    )
