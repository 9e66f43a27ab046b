"""Which provider serves a run: the one place a route is chosen from the run's config."""

from __future__ import annotations

from pipeline.core.config import RunConfig
from pipeline.core.errors import UsageError
from pipeline.core.routes import Route
from pipeline.providers.base import Provider
from pipeline.providers.gemini.provider import GeminiProvider

# Routes whose provider is still being written: choosing one stops before anything is sent.
NOT_YET: frozenset[Route] = frozenset()


def check_available(route: Route) -> None:
    """Raise ``UsageError`` (exit 2, nothing sent) for a route nanobatch cannot send through."""
    if route in NOT_YET:
        raise UsageError(
            f"--provider {route.value} is not yet available in this version; "
            f"use --provider {Route.GEMINI.value}"
        )


def provider_for(config: RunConfig) -> Provider:
    """The provider for ``config``'s route, with its credentials."""
    check_available(config.provider)
    # The other routes' modules are imported when chosen: a run needs one route's (~20 ms each).
    match config.provider:
        case Route.GEMINI:
            return GeminiProvider.from_config(config)
        case Route.VERTEX:
            from pipeline.providers.vertex.provider import VertexProvider

            return VertexProvider.from_config(config)
        case Route.OPENAI_CHAT:
            from pipeline.providers.openai_chat.provider import OpenAIChatProvider

            return OpenAIChatProvider.from_config(config)
    raise AssertionError(f"no provider for {config.provider!r}")  # a bug: NOT_YET is stale
