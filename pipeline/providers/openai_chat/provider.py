"""OpenAI-compatible chat-completions gateways as a ``Provider``: ``POST {base}/chat/completions``
with a Bearer key (OpenRouter, Vercel AI Gateway, LiteLLM proxies, new-api / one-api).

``--base-url`` is the base that precedes ``/chat/completions`` (``https://openrouter.ai/api/v1``),
and is required: there is no default gateway. The key is the gateway's own (``--api-key`` or
``NANOBATCH_GATEWAY_KEY``, read by the CLI), never Google's, and travels only as
``Authorization: Bearer``. Before the first paid request, the gateway's model list is read
once (``check.py``). Image links in answers are fetched, with ``--follow-image-links``,
by the shared download path, which sends no credential at all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from pipeline.core.clock import SYSTEM_CLOCK, Clock
from pipeline.core.config import DEFAULT_TIMEOUTS_S, AuthStyle, RunConfig
from pipeline.core.errors import UsageError
from pipeline.core.models import MODEL_ID_IN_BODY, resolve_model
from pipeline.core.routes import KEY_VARIABLES, Route
from pipeline.core.types import Job, Outcome, Tier, TransportFailure
from pipeline.plan.sources import SourceCache
from pipeline.providers.auth import ApiKeyAuth, Auth
from pipeline.providers.base import AnswerReader, Capabilities, PreparedRequest
from pipeline.providers.common import prepared, whole_body
from pipeline.providers.gemini.classify import classify_failure
from pipeline.providers.http import HttpClient
from pipeline.providers.openai_chat.check import check_gateway
from pipeline.providers.openai_chat.classify import classify
from pipeline.providers.openai_chat.request import LINK_SCHEMES, build_body

CAPABILITIES = Capabilities(
    tiers=(Tier.STANDARD, Tier.FLEX, Tier.PRIORITY),  # OpenAI's service_tier
    batch=False,  # gateways have no batch endpoint for these models
    link_schemes=LINK_SCHEMES,  # passed on as image_url; files go as data: URLs
    model_id=MODEL_ID_IN_BODY,  # the id travels in the body: "google/...", ":free" allowed
    credentials=("--api-key", *KEY_VARIABLES[Route.OPENAI_CHAT]),  # never Google's variables
)

_SCHEME = re.compile(r"https?://[^/?#\s]+", re.IGNORECASE)


def chat_url(base_url: str | None) -> str:
    """``{base}/chat/completions`` for ``--base-url``; ``UsageError`` when there is none or it
    is not an http(s) address, or already names the endpoint."""
    base = (base_url or "").strip().rstrip("/")
    if not base:
        raise UsageError(
            "--provider openai-chat needs --base-url: the gateway's address before "
            "/chat/completions, e.g. https://openrouter.ai/api/v1"
        )
    if not _SCHEME.match(base):
        raise UsageError(f"--base-url {base!r}: expected an http(s):// address")
    if base.endswith("/chat/completions"):
        base = base.removesuffix("/chat/completions")  # a full endpoint given: take its base
    return f"{base}/chat/completions"


@dataclass(frozen=True, slots=True)
class OpenAIChatProvider:
    """The chat body, the gateways' classifier, a Bearer key. Holds no per-request state: one
    per run, shared by all workers."""

    url: str  # the full endpoint, ``chat_url(--base-url)``
    auth: Auth = field(default_factory=lambda: ApiKeyAuth(None))
    timeouts_s: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_TIMEOUTS_S))
    fit_images: bool = False  # downscale source images over the per-image limit
    follow_links: bool = False  # an answer's image link is its image (--follow-image-links)
    clock: Clock = field(default=SYSTEM_CLOCK, repr=False, compare=False)  # the run's
    model: str = ""  # the run's model as sent: the one the gateway check looks for ("": none)
    name: ClassVar[str] = "openai-chat"
    capabilities: ClassVar[Capabilities] = CAPABILITIES

    @classmethod
    def from_config(cls, config: RunConfig) -> OpenAIChatProvider:
        return cls(
            url=chat_url(config.base_url),
            auth=ApiKeyAuth(config.api_key, AuthStyle.BEARER),  # gateways take nothing else
            timeouts_s=config.retry.timeouts_s,
            fit_images=config.fit_images,
            follow_links=config.follow_image_links,
            clock=config.clock,
            model=resolve_model(config.model)[0],
        )

    def prepare(self, job: Job, sources: SourceCache) -> PreparedRequest:
        built = build_body(job, sources, fit_images=self.fit_images)
        return prepared(job, self.url, built, self.timeouts_s)

    def reader(self, request: PreparedRequest) -> AnswerReader:
        return whole_body(classify, request, self.follow_links, self.clock)

    def classify_failure(self, failure: TransportFailure, message: str, sent: bool) -> Outcome:
        # No answer means the same on every route: nothing here is the gateway's.
        return classify_failure(failure, message, sent)

    async def preflight(self, client: HttpClient) -> OpenAIChatProvider:
        # GET {base}/models: the one unbilled read every OpenAI-compatible gateway serves.
        bearer = (await self.auth.credentials()).headers.get("authorization", "")
        secret = bearer.removeprefix("Bearer ")
        await check_gateway(self, client, self.url, self.model, secret)
        return self
