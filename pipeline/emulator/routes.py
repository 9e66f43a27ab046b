"""Which API a request speaks, from its method and path: the Gemini API, Vertex AI (a project's
regional, multi-region or global location, or express mode without a project), or an
OpenAI-compatible chat gateway; and whether it generates or only reads a model's metadata.

Vertex's hosts differ by location (``{loc}-aiplatform.googleapis.com``,
``aiplatform.{us|eu}.rep.googleapis.com``, ``aiplatform.googleapis.com`` for ``global`` and
express mode) but a client pointed at the emulator by a base URL sends the same paths to one
host, so the path alone decides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class RouteKind(StrEnum):
    """The route a request came through; the values are the keys of ``by_route``."""

    GEMINI = "gemini"
    VERTEX = "vertex"
    EXPRESS = "vertex-express"
    CHAT = "openai-chat"


class Action(StrEnum):
    GENERATE = "generate"
    GET_MODEL = "get_model"  # an unbilled read of the model's metadata
    LIST_MODELS = "list_models"  # a chat gateway's unbilled model list (GET {base}/models)


@dataclass(frozen=True, slots=True)
class ApiRoute:
    kind: RouteKind
    action: Action
    version: str
    model: str  # as written in the URL; the chat route names it in the body
    project: str | None = None
    location: str | None = None
    public: bool = False  # a model list anyone may read (OpenRouter's, under /api)

    @property
    def vertex(self) -> bool:
        return self.kind in (RouteKind.VERTEX, RouteKind.EXPRESS)

    @property
    def vertex_name(self) -> str | None:
        """The publisher model's resource name, as Vertex quotes it in errors."""
        if self.kind is RouteKind.VERTEX:
            return (
                f"projects/{self.project}/locations/{self.location}/publishers/google/"
                f"models/{self.model}"
            )
        if self.kind is RouteKind.EXPRESS:
            return f"publishers/google/models/{self.model}"
        return None


_GEMINI = re.compile(r"^/(?P<version>v1beta|v1|v1alpha)/models/(?P<model>[^:]+?)(?P<verb>:\w+)?$")
_VERTEX = re.compile(
    r"^/(?P<version>v1|v1beta1)/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/"
    r"publishers/google/models/(?P<model>[^/:]+)(?P<verb>:\w+)?$"
)
_EXPRESS = re.compile(
    r"^/(?P<version>v1|v1beta1)/publishers/google/models/(?P<model>[^/:]+)(?P<verb>:\w+)?$"
)
_CHAT = re.compile(r"^(?:/api)?/v1/chat/completions$")
_CHAT_MODELS = re.compile(r"^(?P<api>/api)?/v1/models$")


def api_route(method: str, path: str) -> ApiRoute | None:
    """The API route of a request, or None (404) for any other method and path."""
    if method == "POST" and _CHAT.match(path):
        return ApiRoute(RouteKind.CHAT, Action.GENERATE, "v1", "")
    if method == "GET" and (listed := _CHAT_MODELS.match(path)):
        # OpenRouter's list (under /api) is public; LiteLLM's and new-api's ask for the key.
        public = listed["api"] is not None
        return ApiRoute(RouteKind.CHAT, Action.LIST_MODELS, "v1", "", public=public)
    match, kind = _VERTEX.match(path), RouteKind.VERTEX
    if match is None:
        match, kind = _EXPRESS.match(path), RouteKind.EXPRESS
    if match is None:
        match, kind = _GEMINI.match(path), RouteKind.GEMINI
    if match is None:
        return None
    verb = match["verb"]
    if method == "POST" and verb == ":generateContent":
        action = Action.GENERATE
    elif method == "GET" and verb is None:
        action = Action.GET_MODEL
    else:
        return None
    groups = match.groupdict()
    return ApiRoute(
        kind,
        action,
        match["version"],
        match["model"],
        groups.get("project"),
        groups.get("location"),
    )
