"""The route's settings and its key, from flags and the environment (the CLI's to read)."""

from __future__ import annotations

import os

from pipeline.core.config import ApiKey
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
