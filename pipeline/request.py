"""Job -> generateContent request body (native Gemini format), and the request fingerprint.

Pure apart from reading source images through the cache. Images go first as ``inlineData``,
the prompt last; ``imageConfig`` carries only values the model accepts (the manifest layer has
already rejected the others).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pipeline.config import RetryConfig
from pipeline.models import resolve_model
from pipeline.sources import SourceCache
from pipeline.types import Job


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
    return config


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
    canonical = "nanobatch-fp-1|" + "|".join(f"{k}:{len(v)}:{v}" for k, v in fields)
    return hashlib.sha256(canonical.encode()).hexdigest()


def prepare(job: Job, sources: SourceCache, retry: RetryConfig) -> PreparedRequest:
    """Build the request body; raises SourceImageError if a source image went bad meanwhile."""
    images = [sources.load(path) for path in job.images]
    parts: list[dict[str, Any]] = [
        {"inlineData": {"mimeType": im.mime_type, "data": im.b64}} for im in images
    ]
    parts.append({"text": job.prompt})
    body = {
        "contents": [{"role": "user", "parts": parts}],
        "generationConfig": generation_config(job),
    }
    encoded = json.dumps(body, separators=(",", ":")).encode()
    timeout = retry.timeouts_s.get(effective_size(job), max(retry.timeouts_s.values()))
    return PreparedRequest(
        model=job.model,
        body=encoded,
        fingerprint=fingerprint(job, [im.sha256 for im in images]),
        timeout_s=timeout,
        upload_bytes=len(encoded),
    )
