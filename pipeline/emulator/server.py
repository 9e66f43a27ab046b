"""Serving the emulator on a real socket: ``serve`` (blocking) and ``BackgroundEmulator`` (a
daemon thread, for tests that need a real client such as the google-genai SDK).

The socket is bound here, before uvicorn starts, so ``port=0`` picks a free port and the URL is
known; ``on_ready`` is called once uvicorn is accepting connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Callable, Generator
from types import FrameType

import uvicorn

from pipeline.emulator.app import EmulatorApp, create_app
from pipeline.emulator.config import EmulatorConfig

# uvicorn logs this when an app abandons a response; for the emulator's ``reset`` fault that is
# the point, not an error worth a log line per occurrence.
_DROPPED_RESPONSE_LOG = "ASGI callable returned without completing response."
_GRACEFUL_SHUTDOWN_S = 3
_STARTUP_TIMEOUT_S = 30.0


class _QuietDroppedResponses(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _DROPPED_RESPONSE_LOG


class _Server(uvicorn.Server):
    """uvicorn's server with a ready callback and signal handling that returns cleanly."""

    def __init__(
        self, config: uvicorn.Config, base_url: str, on_ready: Callable[[str], None] | None
    ):
        super().__init__(config)
        self._base_url = base_url
        self._on_ready = on_ready
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = asyncio.Event()  # bound to the server's loop when first awaited

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)
        if self.started and self._on_ready is not None:
            self._on_ready(self._base_url)

    async def main_loop(self) -> None:
        # uvicorn's loop, whose 0.1 s tick (the Date header, should_exit) also wakes at once
        # when ``stop`` is called: a test's ``with BackgroundEmulator`` ends without waiting.
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 0.1)

    def stop(self) -> None:
        """From any thread: drain and return from ``run``."""
        self.should_exit = True
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to wake
                self._loop.call_soon_threadsafe(self._stopping.set)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn re-raises the caught signal after shutdown, which turns a clean Ctrl-C into a
        # KeyboardInterrupt; here the first SIGINT/SIGTERM drains, a second SIGINT forces exit.
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handle(signum: int, frame: FrameType | None) -> None:
            if self.should_exit and signum == signal.SIGINT:
                self.force_exit = True
            self.should_exit = True

        previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _bind(host: str, port: int) -> tuple[socket.socket, str]:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    bound_port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return sock, f"http://{shown}:{bound_port}"


def _make_server(
    app: EmulatorApp, host: str, port: int, on_ready: Callable[[str], None] | None
) -> tuple[_Server, socket.socket]:
    sock, base_url = _bind(host, port)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        interface="asgi3",
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_S,
    )
    return _Server(config, base_url, on_ready), sock


def _run(server: _Server, sock: socket.socket) -> None:
    quiet = _QuietDroppedResponses()
    logger = logging.getLogger("uvicorn.error")
    logger.addFilter(quiet)
    try:
        server.run(sockets=[sock])
    finally:
        logger.removeFilter(quiet)
        sock.close()


def serve(
    config: EmulatorConfig, host: str, port: int, *, on_ready: Callable[[str], None] | None = None
) -> None:
    """Serve the emulator until SIGINT/SIGTERM; ``port=0`` picks a free port."""
    server, sock = _make_server(create_app(config), host, port, on_ready)
    _run(server, sock)


class BackgroundEmulator:
    """The emulator on ``127.0.0.1:<free port>`` in a daemon thread, for the ``with`` block."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.app = create_app(config or EmulatorConfig())
        self.base_url = ""
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def _on_ready(self, base_url: str) -> None:
        self.base_url = base_url
        self._ready.set()

    def _target(self, server: _Server, sock: socket.socket) -> None:
        try:
            _run(server, sock)
        except BaseException as exc:  # reported to the thread that waits in __enter__
            self._failure = exc
        finally:
            self._ready.set()

    def __enter__(self) -> BackgroundEmulator:
        server, sock = _make_server(self.app, "127.0.0.1", 0, self._on_ready)
        self._server = server
        self._thread = threading.Thread(
            target=self._target, args=(server, sock), name="nanobatch-emulator", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(_STARTUP_TIMEOUT_S) or not self.base_url:
            self.__exit__(None, None, None)
            raise RuntimeError(f"the emulator did not start: {self._failure!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout=_GRACEFUL_SHUTDOWN_S + 5)
