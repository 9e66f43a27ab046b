"""An httpx transport that runs the emulator in-process and fails the way a socket would.

``httpx.ASGITransport`` has no notion of a dropped connection or a read timeout. This wrapper
adds both: a response the emulator abandons midway (the ``reset`` fault) becomes
``httpx.RemoteProtocolError``, as httpx raises when a peer closes before the announced body
length; a request's read timeout becomes ``httpx.ReadTimeout``. Cancellation passes straight
through (the app runs in the caller's task), so a client's ``anyio.fail_after`` around a hung
request works, and the emulator has already billed the hang by then.
"""

from __future__ import annotations

import anyio
import httpx

from pipeline.emulator.app import EmulatorApp
from pipeline.emulator.exchange import Message, Receive, Scope, Send


class _ConnectionDropped(Exception):
    """The app started a response and returned without finishing it."""


class _DropDetector:
    """Wraps the app to notice an unfinished response, which ASGITransport cannot express."""

    def __init__(self, app: EmulatorApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = finished = False

        async def tracking_send(message: Message) -> None:
            nonlocal started, finished
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                finished = True
            await send(message)

        await self._app(scope, receive, tracking_send)
        if started and not finished:
            raise _ConnectionDropped


class EmulatorTransport(httpx.AsyncBaseTransport):
    """``httpx.AsyncClient(transport=EmulatorTransport(app), base_url="http://emulator")``."""

    def __init__(self, app: EmulatorApp) -> None:
        self.app = app
        self._asgi = httpx.ASGITransport(app=_DropDetector(app))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        read_timeout = timeouts.get("read") if isinstance(timeouts, dict) else None
        try:
            if read_timeout is None:
                return await self._asgi.handle_async_request(request)
            with anyio.fail_after(read_timeout):
                return await self._asgi.handle_async_request(request)
        except TimeoutError:
            raise httpx.ReadTimeout("timed out waiting for the emulator", request=request) from None
        except _ConnectionDropped:
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body", request=request
            ) from None
