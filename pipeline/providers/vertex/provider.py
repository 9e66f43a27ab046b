"""Vertex AI's ``generateContent`` as a ``Provider``: the native Gemini body and classifier
(``gemini.request``, ``gemini.classify``) at Vertex's addresses (``urls``), with OAuth tokens
from Application Default Credentials (``adc``) or, in express mode, an API key.

Express mode is chosen as the google-genai SDK chooses it: a key given with ``--api-key``, or
a key from ``GOOGLE_API_KEY`` when no project is set. Otherwise the route is a project's
location, its project from ``--project``/``GOOGLE_CLOUD_PROJECT`` or else the one the
credentials name, settled by the route check (``preflight``) before anything is sent.

Flex and Priority travel as Vertex's two headers (``X-Vertex-AI-LLM-Request-Type: shared``,
``X-Vertex-AI-LLM-Shared-Request-Type: flex|priority``), beside the body's ``serviceTier``
that the shared body builder writes (google-genai 3.x sends that field to Vertex too; the
headers are Vertex's documented way). The fingerprint leaves the tier out on every route.
Flex is served at ``global`` only: a run whose tier is Flex elsewhere is refused up front.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from pipeline.core.clock import SYSTEM_CLOCK, Clock
from pipeline.core.config import DEFAULT_TIMEOUTS_S, GEMINI_BASE_URL, AuthStyle, RunConfig
from pipeline.core.errors import UsageError
from pipeline.core.models import DEFAULT_MODEL, MODEL_ID_IN_PATH, resolve_model
from pipeline.core.routes import KEY_VARIABLES, LINK_SCHEMES, Route, api_version
from pipeline.core.types import Job, Outcome, Tier, TransportFailure
from pipeline.plan.sources import SourceCache
from pipeline.providers.auth import ApiKeyAuth, Auth, CredentialsFailed, TokenAuth
from pipeline.providers.base import JSON_HEADERS, AnswerReader, Capabilities, PreparedRequest
from pipeline.providers.common import prepared
from pipeline.providers.gemini.answers import reader_for
from pipeline.providers.gemini.classify import classify_failure
from pipeline.providers.gemini.request import build_body
from pipeline.providers.http import HttpClient
from pipeline.providers.vertex.check import check_route
from pipeline.providers.vertex.classify import classify
from pipeline.providers.vertex.urls import GLOBAL, VertexRoute, check_location, check_project

if TYPE_CHECKING:  # google-auth is imported only when a run uses OAuth
    from pipeline.providers.vertex.adc import AdcTokens

CAPABILITIES = Capabilities(
    tiers=(Tier.STANDARD, Tier.FLEX, Tier.PRIORITY),  # Vertex's headers
    batch=False,
    link_schemes=LINK_SCHEMES[Route.VERTEX],  # sent as fileData.fileUri
    model_id=MODEL_ID_IN_PATH,
    credentials=(
        "--api-key or GOOGLE_API_KEY (express mode)",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "gcloud auth application-default login",
        "the GCE metadata server",
    ),
)

# Vertex's tier headers; Standard sends none.
TIER_HEADERS: dict[Tier, dict[str, str]] = {
    tier: {
        "x-vertex-ai-llm-request-type": "shared",
        "x-vertex-ai-llm-shared-request-type": tier.value,
    }
    for tier in (Tier.FLEX, Tier.PRIORITY)
}

NO_PROJECT = (
    "Vertex AI needs a Google Cloud project and the credentials name none: pass --project P "
    "or set GOOGLE_CLOUD_PROJECT (or use an API key for express mode)"
)


@dataclass(frozen=True, slots=True)
class VertexProvider:
    """Vertex's ``generateContent`` at ``route``. One per run, shared by all workers; the route
    check (``preflight``) returns the copy to send through (its project settled)."""

    route: VertexRoute
    auth: Auth
    tokens: AdcTokens | None = None  # the OAuth refresher behind ``auth`` (None: a key)
    model: str = DEFAULT_MODEL  # the run's model: the one the route check reads
    api_version: str | None = None  # --api-version; None: by model (``routes.api_version``)
    headers: Mapping[str, str] = field(default_factory=lambda: JSON_HEADERS)  # every request's
    timeouts_s: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_TIMEOUTS_S))
    fit_images: bool = False
    follow_links: bool = False
    out_dir: Path | None = None  # a run's output folder: large images are spooled into it
    clock: Clock = field(default=SYSTEM_CLOCK, repr=False, compare=False)  # the run's
    name: ClassVar[str] = Route.VERTEX.value
    capabilities: ClassVar[Capabilities] = CAPABILITIES

    @classmethod
    def from_config(cls, config: RunConfig) -> VertexProvider:
        """The provider for ``config``; raises ``UsageError`` for settings the route cannot
        take (checked without the network, so ``validate`` says the same)."""
        location = check_location(config.location)
        project = check_project(config.project) if config.project else None
        key = config.api_key
        # A key given on purpose (--api-key, --emulate) means express mode; one found in the
        # environment yields to a project, as the SDK lets it.
        express = key is not None and (
            project is None or key.source not in KEY_VARIABLES[Route.VERTEX]
        )
        if config.tier is Tier.FLEX and location != GLOBAL and not express:
            raise UsageError(
                f"Flex on Vertex AI is served at --location {GLOBAL} only, not {location}: "
                f"use --location {GLOBAL}, or --tier standard"
            )
        auth: Auth
        tokens = None
        if express:
            assert key is not None
            if location != GLOBAL:
                raise UsageError(
                    f"Vertex express mode (an API key, from {key.source}) is served at "
                    f"{GLOBAL} only, not {location}: drop --location (and GOOGLE_CLOUD_LOCATION) "
                    "or use --project with OAuth credentials for a regional endpoint"
                )
            if config.auth is AuthStyle.BEARER:
                raise UsageError(
                    "--auth bearer: Vertex express mode takes its key in x-goog-api-key (the "
                    "default) or ?key= (--auth query), not as a Bearer token: drop --auth"
                )
            auth = ApiKeyAuth(key, config.auth)
        else:
            if config.auth is not AuthStyle.HEADER:
                raise UsageError(
                    f"--auth {config.auth.value} applies to API keys; Vertex AI with a project "
                    "sends OAuth tokens (Authorization: Bearer) from your Google credentials: "
                    "drop --auth"
                )
            from pipeline.providers.vertex.adc import AdcTokens, adc_source

            source = adc_source()
            clock = config.clock  # tokens expire on the run's clock (a virtual one in tests)

            def now() -> float:
                return clock.now().timestamp()

            tokens = AdcTokens(source=source, now=now)
            auth = TokenAuth(tokens, source=source, now=now)
        base_url = None if config.base_url == GEMINI_BASE_URL else config.base_url
        return cls(
            route=VertexRoute(location, project, express, base_url),
            auth=auth,
            tokens=tokens,
            model=resolve_model(config.model)[0],
            api_version=config.api_version,
            timeouts_s=config.retry.timeouts_s,
            fit_images=config.fit_images,
            follow_links=config.follow_image_links,
            out_dir=config.out_dir,
            clock=config.clock,
        )

    def version(self, model: str) -> str:
        return api_version(Route.VERTEX, model, self.api_version)

    def prepare(self, job: Job, sources: SourceCache) -> PreparedRequest:
        built = build_body(job, sources, fit_images=self.fit_images)
        url = self.route.generate_url(job.model, self.version(job.model))
        tier_headers = TIER_HEADERS.get(job.tier)
        headers = {**self.headers, **tier_headers} if tier_headers else self.headers
        return prepared(job, url, built, self.timeouts_s, headers)

    def reader(self, request: PreparedRequest) -> AnswerReader:
        return reader_for(classify, self, request)

    def classify_failure(self, failure: TransportFailure, message: str, sent: bool) -> Outcome:
        return classify_failure(failure, message, sent)

    async def preflight(self, client: HttpClient) -> VertexProvider:
        """Settle the project (from the credentials when not given), then read the run's model
        at the route: a route that cannot serve it raises ``UsageError`` (exit 2)."""
        ready = self
        if self.tokens is not None:
            self.tokens.bind(client)  # google-auth's requests go through the run's HTTP
            try:
                await self.auth.credentials()  # finds the credentials, gets the first token
            except CredentialsFailed as e:
                raise UsageError(f"Vertex AI: {e}; nothing was sent") from None
            project = self.route.project or self.tokens.project
            if not project:
                raise UsageError(NO_PROJECT)
            headers = dict(self.headers)
            if self.tokens.quota_project:  # the project billed for quota, as the SDK sends it
                headers["x-goog-user-project"] = self.tokens.quota_project
            route = replace(self.route, project=check_project(project))
            ready = replace(self, route=route, headers=headers)
        await check_route(ready, client, ready.route, self.model, self.version(self.model))
        return ready
