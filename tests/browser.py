"""One headless Chromium for every page a test renders, driven over the DevTools protocol.

``chromium --dump-dom`` starts a whole browser per page (~0.6 s of start-up and a core's worth
of processes each time); this helper starts it once and opens each page in a fresh tab. A page
is read as ``--virtual-time-budget --dump-dom`` reads it: virtual time runs until the budget
is spent, paused while a fetch (an image) is pending, so timers fire and images load without a
real wait; then the DOM is serialised.

The protocol travels over ``--remote-debugging-pipe``: the browser reads commands from its file
descriptor 3 and writes answers to 4, one JSON message per NUL-terminated frame. A shell
``exec`` puts the two pipes there (``subprocess`` has no thread-safe way to renumber them).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

TIMEOUT_S = 60.0
WIDTH, HEIGHT = 1280, 4000  # tall enough that every tile of a page is in view (lazy images)


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    pytest.skip("chromium not installed: apt-get install chromium (scripts/install_chromium.sh)")


class Browser:
    """A headless Chromium; ``dom(url)`` renders one page in a new tab and returns its DOM."""

    def __init__(self, profile: Path) -> None:
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync",
                 f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}",
                 "--remote-debugging-pipe", "about:blank"]  # fmt: skip
        self._process = subprocess.Popen(
            ["sh", "-c", 'exec "$0" "$@" 3<&0 4>&1 </dev/null >/dev/null', chromium(), *flags],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._next_id = 0
        self._buffer = b""
        self._events: list[dict[str, Any]] = []

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._process.poll() is None:
            with contextlib.suppress(OSError):  # it is gone already: nothing to ask
                self._send("Browser.close")
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        for pipe in (self._process.stdin, self._process.stdout):
            if pipe is not None:
                pipe.close()

    def dom(self, url: str, budget_ms: int = 2000) -> str:
        """The page's DOM after ``budget_ms`` of virtual time (its script ran, images loaded)."""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        try:
            self.call("Emulation.setDeviceMetricsOverride", session, width=WIDTH, height=HEIGHT,
                      deviceScaleFactor=1, mobile=False)  # fmt: skip
            # Virtual time stands still until the page is asked for, so none of the budget is
            # spent on about:blank; from then on it runs, paused while any fetch is pending.
            self.call("Emulation.setVirtualTimePolicy", session, policy="pause")
            self.call("Page.navigate", session, url=url)
            self.call("Emulation.setVirtualTimePolicy", session,
                      policy="pauseIfNetworkFetchesPending", budget=budget_ms)  # fmt: skip
            self._event("Emulation.virtualTimeBudgetExpired", session)
            found = self.call("Runtime.evaluate", session,
                              expression="document.documentElement.outerHTML")  # fmt: skip
            html: str = found["result"]["value"]
            return html
        finally:
            self.call("Target.closeTarget", targetId=target)
            self._events.clear()  # the closed tab's: none is waited for any more

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its answer (events that arrive meanwhile are kept)."""
        sent = self._send(method, session, **params)
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            message = self._receive(deadline)
            if message.get("id") == sent:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result
            if "method" in message:
                self._events.append(message)

    def _send(self, method: str, session: str | None = None, **params: Any) -> int:
        assert self._process.stdin is not None
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        self._process.stdin.write(json.dumps(message).encode() + b"\0")
        self._process.stdin.flush()
        return self._next_id

    def _event(self, method: str, session: str) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            for event in self._events:
                if event["method"] == method and event.get("sessionId") == session:
                    self._events.remove(event)
                    return event
            self._events.append(self._receive(deadline))

    def _receive(self, deadline: float) -> dict[str, Any]:
        assert self._process.stdout is not None
        fd = self._process.stdout.fileno()
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise EOFError(f"chromium exited ({self._process.poll()})")
            self._buffer += chunk
        frame, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(frame)
        return message
