"""No credential leaves the origin it was meant for: API calls never follow a redirect.

Two real servers on 127.0.0.1 (two ports, so two origins): the first answers every request
with a redirect to the second, which records whatever arrives.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anyio
import pytest

from pipeline.core.config import AuthStyle
from pipeline.run.scheduler import run_manifest
from tests.helpers import TEST_KEY, run_config, write_csv


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # A short poll: shutdown() waits for the loop's next check (0.5 s by default, per server).
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def recorder(seen: list[str]) -> type[BaseHTTPRequestHandler]:
    class Recorder(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace")
            seen.append(f"{self.path} {self.headers.as_string()} {body}")
            self.send_response(500)
            self.send_header("content-length", "0")
            self.end_headers()

        do_GET = do_POST = _record

        def log_message(self, *args: object) -> None:
            pass

    return Recorder


def redirector(target: str, status: int) -> type[BaseHTTPRequestHandler]:
    class Redirector(BaseHTTPRequestHandler):
        def _redirect(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            self.send_response(status)
            # The path and query are kept, as real servers do: ``?key=`` would go along.
            self.send_header("location", target + self.path)
            self.send_header("content-length", "0")
            self.end_headers()

        do_GET = do_POST = _redirect

        def log_message(self, *args: object) -> None:
            pass

    return Redirector


@pytest.mark.parametrize(
    ("auth", "status"),
    [(AuthStyle.HEADER, 307), (AuthStyle.BEARER, 308), (AuthStyle.QUERY, 302)],
)
def test_a_redirect_to_another_origin_carries_no_credential_and_stops_the_run(
    tmp_path: Path, auth: AuthStyle, status: int
) -> None:
    seen: list[str] = []
    manifest = write_csv(tmp_path / "m.csv", [{"id": "a", "prompt": "a cat"}])
    with serving(recorder(seen)) as other, serving(redirector(other, status)) as api:
        config = run_config(manifest, tmp_path / "out", base_url=api, auth=auth, concurrency=1)
        result = anyio.run(run_manifest, config)
    assert [s for s in seen if TEST_KEY in s] == []
    assert seen == []  # not followed at all: the other origin saw nothing
    assert result.stopped is not None
    assert result.stopped.reason == "REDIRECTED"
    assert other.removeprefix("http://") in (result.stopped.message or "")
    assert TEST_KEY not in (result.stopped.message or "")
    assert result.requests == 1  # the run stopped: no row asks again
