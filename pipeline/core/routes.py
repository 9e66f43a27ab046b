"""Routes: which protocol, at which address, a run pays through; and what a route's settings
default to. Pure: the CLI reads flags and the environment and hands them here.

A route is chosen as the google-genai SDK chooses, so users' environments already select it:
``--provider`` wins; else ``GOOGLE_GENAI_USE_ENTERPRISE`` (the newer name, which wins when
set) or ``GOOGLE_GENAI_USE_VERTEXAI`` (``true``/``1``) select Vertex; else the Gemini API.
``--location`` wins over ``GOOGLE_CLOUD_LOCATION``, which wins over ``global``; ``--project``
over ``GOOGLE_CLOUD_PROJECT`` (none: the one Application Default Credentials name).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from pipeline.core.errors import UsageError


class Route(StrEnum):
    """The protocols nanobatch speaks, as ``--provider`` and the ledger spell them."""

    GEMINI = "gemini"  # the Gemini API's native generateContent (and gateways that copy it)
    VERTEX = "vertex"  # Vertex AI: a project's location, or express mode with a key
    OPENAI_CHAT = "openai-chat"  # an OpenAI-compatible /chat/completions gateway


DEFAULT_LOCATION = "global"  # the SDK's; 3.1 Flash Image and Flex are served only there

# The API versions each route takes (``--api-version``); None of these: auto, by model.
API_VERSIONS: dict[Route, tuple[str, ...]] = {
    Route.GEMINI: ("v1", "v1beta", "v1alpha"),
    Route.VERTEX: ("v1", "v1beta1"),
    Route.OPENAI_CHAT: (),  # the version is part of the gateway's --base-url
}

# Where a route's API key comes from when --api-key is not given, in the order looked. A chat
# gateway is a third party: Google's key variables are never read for it, so a key meant for
# Google cannot be sent to it by accident.
KEY_VARIABLES: dict[Route, tuple[str, ...]] = {
    Route.GEMINI: ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    Route.VERTEX: ("GOOGLE_API_KEY",),  # express mode; a project uses OAuth instead
    Route.OPENAI_CHAT: ("NANOBATCH_GATEWAY_KEY",),
}

# The source links each route takes as links (sent as ``fileData.fileUri``, fetched by the
# server), checked per row by the plan (``validate`` and ``run`` alike). Cloud Storage links
# are Vertex's: the Gemini API reads only Cloud Storage buckets registered with it, which
# nanobatch does not do, so a gs:// source on it is an invalid row that says so.
LINK_SCHEMES: dict[Route, tuple[str, ...]] = {
    Route.GEMINI: ("http://", "https://"),
    Route.VERTEX: ("gs://", "http://", "https://"),
    # A gateway passes a link on as image_url, to be fetched by whoever serves it; some take
    # none at all in OpenAI mode (seed 004). https only: files go as data: URLs.
    Route.OPENAI_CHAT: ("https://",),
}

_TRUE = ("true", "1")


def _env_vertex(env: Mapping[str, str]) -> bool:
    for name in ("GOOGLE_GENAI_USE_ENTERPRISE", "GOOGLE_GENAI_USE_VERTEXAI"):
        value = env.get(name, "").strip().lower()
        if value:
            return value in _TRUE
    return False


@dataclass(frozen=True, slots=True)
class RouteChoice:
    """The route's settings once flags and environment are resolved."""

    provider: Route
    project: str | None
    location: str
    api_version: str | None  # None: chosen per model (``api_version``)


def resolve_route(
    provider: str | None,
    project: str | None,
    location: str | None,
    api_version: str | None,
    *,
    env: Mapping[str, str],
    auth: str | None = None,
) -> RouteChoice:
    """Flags (None: not given) over the environment over the defaults; a flag that does not
    apply to the chosen route is refused with the reason (``UsageError``)."""
    if provider is None:
        route = Route.VERTEX if _env_vertex(env) else Route.GEMINI
    else:
        try:
            route = Route(provider.strip().lower())
        except ValueError:
            names = ", ".join(r.value for r in Route)
            raise UsageError(f"--provider {provider!r}: use one of {names}") from None
    if route is not Route.VERTEX:
        # Only flags are refused: the variables are the SDK's, set for other tools too.
        for flag, value in (("--project", project), ("--location", location)):
            if value is not None:
                raise UsageError(
                    f"{flag} applies to --provider vertex only (a Google Cloud project's "
                    f"location); --provider {route.value} has none: drop {flag}"
                )
    if route is Route.OPENAI_CHAT and auth not in (None, "bearer"):
        raise UsageError(
            f"--auth {auth}: a chat gateway takes its key as a Bearer token "
            "(OpenAI's convention), never in a Google header or the URL: drop --auth"
        )
    if api_version is not None:
        versions = API_VERSIONS[route]
        if not versions:
            raise UsageError(
                f"--api-version applies to the native routes (gemini, vertex); for "
                f"--provider {route.value} the version is part of --base-url: drop --api-version"
            )
        if api_version not in versions:
            raise UsageError(
                f"--api-version {api_version!r}: --provider {route.value} takes "
                f"{' or '.join(versions)}"
            )
    if route is Route.VERTEX:
        project = project or env.get("GOOGLE_CLOUD_PROJECT", "").strip() or None
        location = location or env.get("GOOGLE_CLOUD_LOCATION", "").strip() or DEFAULT_LOCATION
    return RouteChoice(route, project, location or DEFAULT_LOCATION, api_version)


def is_preview(model: str) -> bool:
    """A preview or experimental model id (served on the beta versions)."""
    return any(mark in model for mark in ("-preview", "-exp"))


def api_version(route: Route, model: str, chosen: str | None) -> str:
    """The version in a native request's path: ``--api-version`` when given, else by model.

    GA models are leaving the beta versions (404s reported on ``v1beta``) and the SDK now
    defaults to ``v1``; preview models are published on the beta versions first. So: ``v1``
    for a GA id, the route's beta for a preview id.
    """
    if chosen:
        return chosen
    if route is Route.VERTEX:
        return "v1beta1" if is_preview(model) else "v1"
    return "v1beta" if is_preview(model) else "v1"
