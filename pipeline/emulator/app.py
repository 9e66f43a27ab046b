"""The ASGI application: which surface a request is for, and the order of checks before a
generation.

Order of checks, as Google's front end applies them: route and method -> credentials (key or
token, and on Vertex the project) -> model exists, and on Vertex is served at that location
(404) -> body and validation (400) -> tier allowed (400) -> then the generation pipeline
(``generation.py``: quota, rpm, shedding, faults, refusals, success). The chat gateway adds its
own key and request translation first, and words Google's answers its way. The Files and Batch
APIs (``batch_routes.py``) answer their own paths.
"""

from __future__ import annotations

import hashlib
import json
from urllib.parse import parse_qs

from pipeline.emulator import access, chat, errors, links, metadata, tiers, vertex
from pipeline.emulator.batch_routes import BatchSurface
from pipeline.emulator.chatanswers import ChatDialect
from pipeline.emulator.config import EmulatorConfig
from pipeline.emulator.dialects import GOOGLE
from pipeline.emulator.errors import ApiError
from pipeline.emulator.exchange import Exchange, Receive, Scope, Send, respond
from pipeline.emulator.generation import Call, Generator
from pipeline.emulator.models import find_model
from pipeline.emulator.routes import Action, ApiRoute, RouteKind, api_route
from pipeline.emulator.stats import RunState
from pipeline.emulator.surfaces import Surfaces
from pipeline.emulator.timestamps import WallClock
from pipeline.emulator.validate import validate


class EmulatorApp:
    """The emulator as an ASGI 3 callable. Create it with ``create_app``."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self._state = RunState()
        self._generator = Generator(config, self._state)
        self._surfaces = Surfaces(config)
        # The Files and Batch APIs (their own modules; they share the state and the renderer).
        renderer = self._generator.renderer
        self.batch = BatchSurface(config, self._state, renderer, WallClock(config.clock))

    def stats_snapshot(self) -> dict[str, object]:
        """The counters served at ``GET /_emulator/stats``."""
        self.batch.engine.advance()  # bill the batch jobs that have ended by now
        return self._state.snapshot()

    def reset_stats(self) -> None:
        """Forget the run: counters, fingerprints, retry deadlines, the rpm window, batch jobs
        and files (issued OAuth tokens stay valid)."""
        self._state.reset()
        self._generator.reset()
        self.batch.clear()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        counters = self._state.routes
        if path.startswith(links.PREFIX) and method == "GET":
            await self._surfaces.hosted_image(scope, send, counters)
            return
        if path.startswith("/_emulator/"):
            await self._control(scope, send)
            return
        if path == "/token" and method == "POST":
            await self._surfaces.token(scope, receive, send, counters)
            return
        if metadata.is_metadata(path, dict(scope["headers"])):
            await self._surfaces.metadata(scope, receive, send, counters)
            return
        route = api_route(method, path)
        if route is not None and route.action is Action.GET_MODEL:
            await self._surfaces.model_read(route, scope, receive, send, counters)
            return
        if route is not None and route.action is Action.LIST_MODELS:
            await self._surfaces.chat_models(route, scope, receive, send, counters)
            return
        exchange = Exchange(receive, send, self._state, self.config)
        self._state.arrived()
        try:
            if not await self.batch.handle(scope, exchange, self._authenticate_key):
                await self._api(scope, route, exchange)
        finally:
            # Runs on cancellation too (an in-process client gave up): the request still counts.
            if not exchange.recorded:
                self._state.answered("disconnected")
            self._state.finished()

    async def _control(self, scope: Scope, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        if path == "/_emulator/stats" and method == "GET":
            status, body = 200, json.dumps(self.stats_snapshot()).encode()
        elif path == "/_emulator/reset" and method == "POST":
            self.reset_stats()
            status, body = 200, json.dumps(self.stats_snapshot()).encode()
        elif path == "/_emulator/expire-tokens" and method == "POST":
            self._surfaces.tokens.expire_all(self.config.clock())
            status, body = 200, json.dumps(self.stats_snapshot()).encode()
        else:
            status, body = 404, errors.route_not_found().body()
        await respond(send, status, body)

    def _authenticate_key(self, scope: Scope) -> ApiError | None:
        """The Gemini API's key check, for the Files and Batch APIs."""
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        return access.gemini(access.Credentials.of(dict(scope["headers"]), query), self.config)

    async def _api(self, scope: Scope, route: ApiRoute | None, exchange: Exchange) -> None:
        body = await exchange.read_body()
        if route is None:
            await exchange.error(errors.route_not_found())
            return
        self._state.routes.routed(route.kind)
        headers = dict(scope["headers"])
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        credentials = access.Credentials.of(headers, query)
        if route.kind is RouteKind.CHAT:
            await self._chat(scope, body, credentials, exchange)
            return
        config = self.config
        if route.vertex:
            key = scope["path"].encode() + b"\n" + body
            exchange.render_error = vertex.error_renderer(config.seed, config.error_array, key)
            denied = access.vertex_route(
                route, credentials, config, self._surfaces.tokens, config.clock()
            )
        else:
            denied = access.gemini(credentials, config)
        if denied is not None:
            await exchange.error(denied)
            return
        model_id = route.model.removeprefix("models/")
        model = find_model(model_id)
        if model is None or (route.vertex and not vertex.serves(route, model_id)):
            await exchange.error(errors.model_not_found(model_id, route.version, route.vertex_name))
            return
        request = validate(model_id, model, body, vertex=route.vertex)
        if isinstance(request, ApiError):
            await exchange.error(request)
            return
        choice = tiers.choose(
            route,
            headers,
            request.service_tier,
            model_id=model_id,
            model_name=model.name,
            no_flex=config.no_flex_models,
        )
        if isinstance(choice, ApiError):
            await exchange.error(choice)
            return
        call = Call(route.kind.value, choice, GOOGLE, vertex=route.vertex)
        await self._generator.generate(request, exchange, call)

    async def _chat(
        self, scope: Scope, body: bytes, credentials: access.Credentials, exchange: Exchange
    ) -> None:
        config = self.config
        denied = chat.authenticate(credentials.bearer, config.api_key)
        translated = denied or chat.translate(body)
        if isinstance(translated, chat.GatewayError):
            await exchange.reply(*translated.encoded())
            return
        digest = hashlib.sha256(body).digest()
        exchange.render_error = chat.wrap_google_error(config.chat_errors, config.seed, digest)
        model = find_model(translated.model_id)
        if model is None:
            unknown = chat.gateway_error(400, f"{translated.model} is not a valid model ID")
            await exchange.reply(*unknown.encoded())
            return
        request = validate(translated.model_id, model, translated.gemini_body)
        if isinstance(request, ApiError):
            await exchange.error(request)
            return
        no_credit = chat.out_of_credit(request.prompt)
        if no_credit is not None:
            await exchange.reply(*no_credit.encoded())
            return
        route = ApiRoute(RouteKind.CHAT, Action.GENERATE, "v1", translated.model_id)
        choice = tiers.choose(
            route,
            {},
            request.service_tier,
            model_id=translated.model_id,
            model_name=model.name,
            no_flex=config.no_flex_models,
        )
        if isinstance(choice, ApiError):
            await exchange.error(choice)
            return
        host = dict(scope["headers"]).get(b"host", b"localhost").decode("latin-1")
        base_url = f"{scope.get('scheme', 'http')}://{host}"
        dialect = ChatDialect(
            config.chat_shape,
            model=translated.model,
            tier=choice.tier,
            tier_asked=choice.asked,
            base_url=base_url,
            links=self._surfaces.links,
        )
        await self._generator.generate(request, exchange, Call(route.kind, choice, dialect, False))


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_app(config: EmulatorConfig) -> EmulatorApp:
    """The emulator as an ASGI application, configured once."""
    return EmulatorApp(config)
