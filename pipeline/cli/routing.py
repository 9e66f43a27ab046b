"""The route's settings and its key, from flags and the environment (the CLI's to read)."""

from __future__ import annotations

import os

from pipeline.core.config import ApiKey
from pipeline.core.errors import UsageError
from pipeline.core.routes import KEY_VARIABLES, Route, RouteChoice, resolve_route


def route_from(
    provider: str | None,
    project: str | None,
    location: str | None,
    api_version: str | None,
    auth: str | None,
) -> RouteChoice:
    """``--provider``, ``--project``, ``--location``, ``--api-version`` over the SDK's
    variables; raises ``UsageError`` for a flag the route does not take (``auth``: the
    ``--auth`` given, None when not)."""
    return resolve_route(provider, project, location, api_version, env=os.environ, auth=auth)


def api_key(route: Route, flag: str | None) -> ApiKey | None:
    """``--api-key``, else the route's own variables (never Google's for a chat gateway)."""
    if flag:
        return ApiKey(flag, "--api-key")
    for name in KEY_VARIABLES[route]:
        if value := os.environ.get(name, "").strip():
            return ApiKey(value, name)
    return None


def gateway_base_url(base_url: str | None, emulate: bool) -> str:
    """A chat gateway's ``--base-url``: required (there is no default gateway, and Google's
    ``GOOGLE_GEMINI_BASE_URL`` is not one); a ``UsageError`` says what it should be."""
    from pipeline.providers.openai_chat.provider import chat_url

    if not emulate:
        chat_url(base_url)
    return base_url or ""


def no_key(route: Route) -> UsageError:
    """The error for a route that needs a key and found none."""
    if route is Route.OPENAI_CHAT:
        return UsageError(
            f"no gateway key: set {KEY_VARIABLES[route][0]} or pass --api-key (GEMINI_API_KEY "
            "and GOOGLE_API_KEY are Google's and are never sent to a gateway)"
        )
    return UsageError(
        "no API key: set GEMINI_API_KEY (or GOOGLE_API_KEY), pass --api-key, "
        "or rehearse with --emulate"
    )
