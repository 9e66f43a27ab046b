"""One headless Chromium for every page a test renders, driven over the DevTools protocol.

``chromium --dump-dom`` starts a whole browser per page (~0.6 s of start-up and a core's worth
of processes each time); this helper starts it once and loads each page afresh in one tab. A
page is read once it has loaded and the load or error event of each of its images has been
handled; then the DOM is serialised.

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


# Before any script of a page: note each image whose load or error event has been dispatched
# (a capturing listener on the document sees both, though neither bubbles). An image can be
# ``complete`` before then (a cache hit), and the page's own handlers run in that dispatch.
_WATCH = """window.__settled = new WeakSet();
for (const type of ["load", "error"])
  document.addEventListener(type, event => {
    if (event.target instanceof HTMLImageElement) window.__settled.add(event.target);
  }, true);"""
# The DOM once the page has loaded (its scripts ran) and each image's event has been handled.
# Ten seconds at most, then the DOM as it is (the test's assertions say what is missing).
_SETTLED = """new Promise(done => {
  const until = Date.now() + 10000;
  const check = () => {
    const ready = document.readyState === "complete"
      && [...document.images].every(image => window.__settled.has(image) || !image.src);
    if (ready || Date.now() > until) done(document.documentElement.outerHTML);
    else setTimeout(check, 10);
  };
  check();
})"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    pytest.skip("chromium not installed: apt-get install chromium (scripts/install_chromium.sh)")


class Browser:
    """A headless Chromium; ``dom(url)`` loads one page and returns its DOM."""

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
        self._session: str | None = None

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

    def dom(self, url: str) -> str:
        """The page's DOM once it has loaded and every image in it has settled."""
        session = self._tab()
        # Through about:blank: the page is loaded afresh even when only its #fragment differs
        # from the one shown before (which would be a same-document navigation).
        self._navigate(session, "about:blank")
        self._navigate(session, url)
        found = self.call("Runtime.evaluate", session, expression=_SETTLED,
                          awaitPromise=True, returnByValue=True)  # fmt: skip
        html: str = found["result"]["value"]
        return html

    def _tab(self) -> str:
        """The session of the one tab pages are shown in, opened on first use."""
        if self._session is None:
            target = self.call("Target.createTarget", url="about:blank")["targetId"]
            session: str = self.call("Target.attachToTarget", targetId=target, flatten=True)[
                "sessionId"
            ]
            self.call("Emulation.setDeviceMetricsOverride", session, width=WIDTH, height=HEIGHT,
                      deviceScaleFactor=1, mobile=False)  # fmt: skip
            self.call("Page.enable", session)
            self.call("Page.addScriptToEvaluateOnNewDocument", session, source=_WATCH)
            self.call("Page.setLifecycleEventsEnabled", session, enabled=True)
            self._session = session
        return self._session

    def _navigate(self, session: str, url: str) -> None:
        """Load ``url`` in the tab as a new document, and wait for its load event."""
        loader = self.call("Page.navigate", session, url=url)["loaderId"]
        self._event(session, "Page.lifecycleEvent", name="load", loaderId=loader)
        self._events.clear()  # this document's: none is waited for any more

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

    def _event(self, session: str, method: str, **params: object) -> dict[str, Any]:
        """Wait for the session's event ``method`` whose parameters include ``params``."""
        deadline = time.monotonic() + TIMEOUT_S
        seen = 0
        while True:
            for event in self._events[seen:]:
                found = event.get("params", {})
                if (event["method"], event.get("sessionId")) == (method, session) and all(
                    found.get(name) == value for name, value in params.items()
                ):
                    return event
            seen = len(self._events)
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
