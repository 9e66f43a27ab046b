"""Who may call which route: API keys on the Gemini API and Vertex express mode, OAuth bearer
tokens on Vertex, the gateway's own key on the chat route. Each check returns the error the
route answers, or None.

Gemini API keys are read from ``x-goog-api-key``, then ``?key=``, then ``Authorization:
Bearer``. On Vertex, a token this emulator issued is checked for expiry and scope; any other
token is accepted (``--bearer any``, the default) or refused (``--bearer issued``), and with
``--api-key`` only that key passes as a token, as before.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.emulator import errors, vertex
from pipeline.emulator.config import EmulatorConfig
from pipeline.emulator.errors import ApiError
from pipeline.emulator.oauth import TokenRegistry, TokenState
from pipeline.emulator.routes import ApiRoute, RouteKind


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a request presented: an API key (header or query) and a bearer token."""

    key: str
    bearer: str

    @classmethod
    def of(cls, headers: dict[bytes, bytes], query: dict[str, list[str]]) -> Credentials:
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        bearer = authorization[7:].strip() if authorization[:7].lower() == "bearer " else ""
        key = headers.get(b"x-goog-api-key", b"").decode("latin-1") or (query.get("key") or [""])[0]
        return cls(key, bearer)


def gemini(credentials: Credentials, config: EmulatorConfig) -> ApiError | None:
    key = credentials.key or credentials.bearer
    if not key:
        return errors.unregistered_caller()
    if config.api_key is not None and key != config.api_key:
        return errors.api_key_invalid()
    return None


def vertex_route(
    route: ApiRoute,
    credentials: Credentials,
    config: EmulatorConfig,
    registry: TokenRegistry,
    now: float,
) -> ApiError | None:
    """Express mode takes a key (or a token); project routes take a token for a known project."""
    if route.kind is RouteKind.EXPRESS and credentials.key:
        if config.api_key is not None and credentials.key != config.api_key:
            return vertex.express_key_invalid()
        return None
    token = credentials.bearer
    if not token:
        return errors.vertex_unauthenticated(missing=True)
    state = registry.check(token, now)
    if state is TokenState.EXPIRED:
        return vertex.token_expired()
    if state is TokenState.NO_SCOPE:
        return vertex.insufficient_scopes()
    if state is TokenState.UNKNOWN and (
        config.bearer == "issued" or (config.api_key is not None and token != config.api_key)
    ):
        return errors.vertex_unauthenticated(missing=False)
    if (
        route.kind is RouteKind.VERTEX
        and config.vertex_projects
        and route.project not in config.vertex_projects
    ):
        return vertex.permission_denied(route)
    return None
