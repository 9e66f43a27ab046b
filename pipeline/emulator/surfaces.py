"""The emulator's side doors, each answered whole and kept out of ``requests``/``by_status``:
the OAuth token endpoint (``POST /token``), the GCE metadata server, model metadata reads and
the chat route's hosted images. Each handler counts itself in the route counters.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from pipeline.emulator import access, catalog, chat, metadata, oauth
from pipeline.emulator.config import EmulatorConfig
from pipeline.emulator.errors import ApiError
from pipeline.emulator.exchange import Receive, Scope, Send, read_body, respond
from pipeline.emulator.links import LinkStore
from pipeline.emulator.oauth import TokenRegistry
from pipeline.emulator.routes import ApiRoute, RouteKind
from pipeline.emulator.routestats import RouteCounters

_NO_STORE = ((b"cache-control", b"no-cache, no-store, max-age=0, must-revalidate"),)
DEFAULT_PROJECT = "emulator-project"


def _query(scope: Scope) -> dict[str, list[str]]:
    return parse_qs(scope.get("query_string", b"").decode("latin-1"))


class Surfaces:
    """The side doors of one emulator: its token registry and hosted images live here."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.tokens = TokenRegistry()
        self.links = LinkStore(config.image_cache_bytes)

    async def token(
        self, scope: Scope, receive: Receive, send: Send, counters: RouteCounters
    ) -> None:
        body = await read_body(receive)
        headers = dict(scope["headers"])
        form = oauth.parse_form(body, headers.get(b"content-type", b""))
        config = self.config
        answer = oauth.token_grant(
            form, self.tokens, config.clock(), config.wall_clock(), config.token_ttl_s
        )
        if answer.issued:
            counters.tokens_issued += 1
        else:
            counters.token_errors += 1
        encoded = json.dumps(answer.body).encode()
        await respond(send, answer.status, encoded, headers=_NO_STORE)

    async def metadata(
        self, scope: Scope, receive: Receive, send: Send, counters: RouteCounters
    ) -> None:
        await read_body(receive)
        headers = dict(scope["headers"])
        projects = sorted(self.config.vertex_projects)
        project = projects[0] if projects else DEFAULT_PROJECT
        result = metadata.answer(scope["path"], _query(scope), headers, project)
        if result.token_scopes is not None:
            issued = self.tokens.issue(
                self.config.clock(), self.config.token_ttl_s, result.token_scopes
            )
            counters.tokens_issued += 1
            result = metadata.token_body(issued)
        flavor = (metadata.FLAVOR,) if result.status != 403 else ()
        await respond(send, result.status, result.body, result.content_type, flavor)

    async def model_read(
        self, route: ApiRoute, scope: Scope, receive: Receive, send: Send, counters: RouteCounters
    ) -> None:
        await read_body(receive)
        counters.model_reads += 1
        credentials = access.Credentials.of(dict(scope["headers"]), _query(scope))
        denied: ApiError | None
        if route.kind is RouteKind.GEMINI:
            denied = access.gemini(credentials, self.config)
        else:
            denied = access.vertex_route(
                route, credentials, self.config, self.tokens, self.config.clock()
            )
        result = denied or catalog.read(route)
        if isinstance(result, ApiError):
            await respond(send, result.code, result.body())
        else:
            await respond(send, 200, json.dumps(result, indent=2).encode())

    async def chat_models(
        self, route: ApiRoute, scope: Scope, receive: Receive, send: Send, counters: RouteCounters
    ) -> None:
        """A chat gateway's model list; under ``/api`` (OpenRouter's) without a key check."""
        await read_body(receive)
        counters.model_reads += 1
        if not route.public:  # /v1/models: LiteLLM's and new-api's check the key
            bearer = access.Credentials.of(dict(scope["headers"]), _query(scope)).bearer
            denied = chat.authenticate(bearer, self.config.api_key)
            if denied is not None:
                await respond(send, *denied.encoded())
                return
        await respond(send, 200, json.dumps(catalog.chat_models()).encode())

    async def hosted_image(self, scope: Scope, send: Send, counters: RouteCounters) -> None:
        found = self.links.get(scope["path"])
        if found is None:
            await respond(send, 404, b"Not Found", b"text/plain")
            return
        counters.links_fetched += 1
        headers = dict(scope["headers"])
        if any(name in headers for name in (b"authorization", b"x-goog-api-key", b"x-api-key")):
            counters.link_fetches_with_key += 1
        data, mime = found
        await respond(send, 200, data, mime.encode())
