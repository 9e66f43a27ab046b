"""Job -> chat-completions request body, as OpenAI-compatible gateways take it for Gemini's
image models (OpenRouter, Vercel AI Gateway, LiteLLM, new-api):

    {"model": "google/gemini-3.1-flash-image-preview",
     "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}},
        {"type": "text", "text": "..."}]}],
     "modalities": ["image", "text"],
     "image_config": {"aspect_ratio": "16:9", "image_size": "2K"}}

Source images first (a file as a base64 ``data:`` URL, an ``https://`` link as it is), the
prompt last. Never OpenAI's ``n`` or ``size``: gateways drop or refuse them, and a dropped size
is a silently wrong image. Pure apart from reading source images through the cache.
"""

from __future__ import annotations

from typing import Any

import orjson

from pipeline.core.routes import LINK_SCHEMES as ROUTE_LINKS
from pipeline.core.routes import Route
from pipeline.core.types import Job, Tier
from pipeline.plan.sources import SourceCache
from pipeline.providers.common import image_config as route_image_config
from pipeline.providers.inputs import load_inputs

# Source links a gateway can be given (``routes.LINK_SCHEMES``, which the plan checks per row).
LINK_SCHEMES = ROUTE_LINKS[Route.OPENAI_CHAT]


def check_link(link: str) -> str | None:
    """Why a chat gateway cannot be sent ``link`` as a source, or None."""
    if link.startswith(LINK_SCHEMES):
        return None
    scheme = link.split(":", 1)[0]
    return (
        f"{link}: --provider openai-chat sends source images as data: URLs (local files) or "
        f"https:// links; a {scheme}:// link cannot be sent: download it and name the file"
    )


def image_config(job: Job) -> dict[str, str]:
    """Size and shape, in the gateways' snake_case ``image_config``; only what the model takes
    (a model without sizes rejects ``image_size``)."""
    return route_image_config(job, "aspect_ratio", "image_size")


def build_body(job: Job, sources: SourceCache, *, fit_images: bool) -> tuple[bytes, list[str]]:
    """The request body and the digests of its source images (for the fingerprint). Raises
    ``SourceImageError`` if a source went bad or is a link a gateway cannot be sent."""
    inputs, digests = load_inputs(job, sources, fit_images=fit_images, check_link=check_link)
    content: list[dict[str, Any]] = [
        {
            "type": "image_url",
            "image_url": {
                "url": source
                if isinstance(source, str)
                else f"data:{source.mime_type};base64,{source.b64}"
            },
        }
        for source in inputs
    ]
    content.append({"type": "text", "text": job.prompt})
    messages: list[dict[str, Any]] = []
    if job.system_instruction:
        messages.append({"role": "system", "content": job.system_instruction})
    messages.append({"role": "user", "content": content})
    # TEXT is asked for too, so a refusal comes with the model's reason.
    body: dict[str, Any] = {
        "model": job.model,
        "messages": messages,
        "modalities": ["image", "text"],
    }
    if config := image_config(job):
        body["image_config"] = config
    if job.temperature is not None:
        body["temperature"] = job.temperature
    if job.seed is not None:
        body["seed"] = job.seed
    if job.tier is not Tier.STANDARD:
        # OpenAI's field; whether a gateway passes it on is its own (its answer says).
        body["service_tier"] = job.tier.value
    return orjson.dumps(body), digests
