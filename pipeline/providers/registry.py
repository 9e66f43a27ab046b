"""Which provider serves a run: the one place a route is chosen from the run's config."""

from __future__ import annotations

from pipeline.core.config import RunConfig
from pipeline.providers.base import Provider
from pipeline.providers.gemini.provider import GeminiProvider


def provider_for(config: RunConfig) -> Provider:
    """The provider for ``config``'s route, with its credentials (today: the native Gemini
    protocol, at ``--base-url`` with ``--api-key``/``--auth``)."""
    return GeminiProvider.from_config(config)
