"""The Gemini API's native protocol (``generateContent``) as a ``Provider``: the first route.

Also serves gateways that copy the native protocol (with ``--auth bearer`` or ``query``) and the
local emulator: the address is ``--base-url``, the rest is the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote

from pipeline.core.clock import SYSTEM_CLOCK, Clock
from pipeline.core.config import DEFAULT_TIMEOUTS_S, GEMINI_BASE_URL, RunConfig
from pipeline.core.models import MODEL_ID_IN_PATH
from pipeline.core.routes import LINK_SCHEMES, Route, api_version
from pipeline.core.types import Job, Outcome, Tier, TransportFailure
from pipeline.plan.sources import SourceCache
from pipeline.providers.auth import ApiKeyAuth, Auth
from pipeline.providers.base import AnswerReader, Capabilities, PreparedRequest
from pipeline.providers.batchapi import BatchRoute
from pipeline.providers.common import prepared
from pipeline.providers.gemini.answers import reader_for
from pipeline.providers.gemini.batch.route import BATCH_API_VERSION, GeminiBatch
from pipeline.providers.gemini.classify import classify, classify_failure
from pipeline.providers.gemini.request import build_body
from pipeline.providers.http import HttpClient

CAPABILITIES = Capabilities(
    tiers=(Tier.STANDARD, Tier.FLEX, Tier.PRIORITY),  # the body's serviceTier
    batch=True,  # the Batch API: batch_route()
    link_schemes=LINK_SCHEMES[Route.GEMINI],  # sent as fileData.fileUri
    model_id=MODEL_ID_IN_PATH,  # the id travels in the URL path
    credentials=("--api-key", "GEMINI_API_KEY", "GOOGLE_API_KEY"),
)


@dataclass(frozen=True, slots=True)
class GeminiProvider:
    """``POST {base}/{version}/models/{model}:generateContent``, the native body, the native
    classifier. Holds no per-request state: one per run, shared by all workers."""

    base_url: str = GEMINI_BASE_URL
    auth: Auth = field(default_factory=lambda: ApiKeyAuth(None))
    timeouts_s: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_TIMEOUTS_S))
    fit_images: bool = False  # downscale source images over the per-image limit
    follow_links: bool = False  # an answer's image links are its images (--follow-image-links)
    out_dir: Path | None = None  # a run's output folder: large images are spooled into it
    clock: Clock = field(default=SYSTEM_CLOCK, repr=False, compare=False)  # the run's
    api_version: str | None = None  # --api-version; None: by model (``routes.api_version``)
    name: ClassVar[str] = "gemini"
    capabilities: ClassVar[Capabilities] = CAPABILITIES

    @classmethod
    def from_config(cls, config: RunConfig) -> GeminiProvider:
        return cls(
            base_url=config.base_url,
            auth=ApiKeyAuth(config.api_key, config.auth),
            timeouts_s=config.retry.timeouts_s,
            fit_images=config.fit_images,
            follow_links=config.follow_image_links,
            out_dir=config.out_dir,
            clock=config.clock,
            api_version=config.api_version,
        )

    def prepare(self, job: Job, sources: SourceCache) -> PreparedRequest:
        built = build_body(job, sources, fit_images=self.fit_images)
        return prepared(job, self.url(job.model), built, self.timeouts_s)

    def url(self, model: str) -> str:
        # The model id was checked against a strict pattern; encoding it too means no id can
        # ever reach another path (``../``) or another query (``?``).
        base = self.base_url.rstrip("/")
        version = api_version(Route.GEMINI, model, self.api_version)
        return f"{base}/{version}/models/{quote(model, safe='')}:generateContent"

    def reader(self, request: PreparedRequest) -> AnswerReader:
        return reader_for(classify, self, request)

    def classify_failure(self, failure: TransportFailure, message: str, sent: bool) -> Outcome:
        return classify_failure(failure, message, sent)

    async def preflight(self, client: HttpClient) -> GeminiProvider:
        # A bad key or model shows in the first answers, unbilled (an error is never billed),
        # and stops the run after at most --concurrency requests: no check of its own.
        return self

    def batch_route(self) -> BatchRoute:
        """The Gemini API's Files and Batch APIs, at this route's address with its ``Auth``."""
        version = self.api_version or BATCH_API_VERSION
        return GeminiBatch(self.base_url, self.auth, version, follow_links=self.follow_links)
