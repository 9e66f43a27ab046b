"""A ``Retry-After`` given as an HTTP-date is measured on the run's clock, as every other wait
is: a 429 saying "after 30 s from now" makes the row wait 30 s of the run's time, even when
the run's wall clock is years away from the machine's (a virtual clock here)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from pipeline.core.clock import VirtualClock
from pipeline.core.config import ApiKey
from pipeline.core.routes import Route
from pipeline.emulator import EmulatorConfig, EmulatorTransport, Payload, create_app
from pipeline.run.scheduler import run_manifest
from tests.helpers import TEST_KEY, run_config, write_csv

ASKED_S = 30
# Google's error, and a gateway's without Google's RetryInfo: the header is all there is.
BODIES = {
    Route.GEMINI: {"error": {"code": 429, "message": "Resource has been exhausted.",
                             "status": "RESOURCE_EXHAUSTED"}},
    Route.OPENAI_CHAT: {"error": {"message": "Rate limit exceeded", "code": 429}},
}  # fmt: skip
ROUTES: dict[Route, dict[str, Any]] = {
    Route.GEMINI: {},
    Route.OPENAI_CHAT: {
        "base_url": "http://emulator.invalid/api/v1",
        "model": "google/gemini-3.1-flash-image-preview",
        "api_key": ApiKey(TEST_KEY, "NANOBATCH_GATEWAY_KEY"),
    },
}


class RateLimitedOnce(httpx.AsyncBaseTransport):
    """The emulator, except that the first generation is answered 429 with a ``Retry-After``
    date ``ASKED_S`` seconds after the run's clock says it is."""

    def __init__(self, inner: httpx.AsyncBaseTransport, clock: VirtualClock, body: object):
        self._inner, self._clock, self._body = inner, clock, json.dumps(body).encode()
        self._done = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._done or request.method != "POST":
            return await self._inner.handle_async_request(request)
        self._done = True
        await request.aread()
        when = format_datetime(self._clock.now() + timedelta(seconds=ASKED_S), usegmt=True)
        headers = {"retry-after": when, "content-type": "application/json"}
        return httpx.Response(429, headers=headers, content=self._body)


@pytest.mark.parametrize("route", list(ROUTES))
def test_a_retry_after_date_is_waited_out_on_the_runs_clock(tmp_path: Path, route: Route) -> None:
    clock = VirtualClock(wall=datetime(2031, 3, 1, 6, 0, tzinfo=UTC))  # not the machine's time
    app = create_app(EmulatorConfig(payload=Payload.COMPACT, clock=clock.monotonic))
    transport = RateLimitedOnce(EmulatorTransport(app), clock, BODIES[route])
    manifest = write_csv(tmp_path / "m.csv", [{"id": "a", "prompt": "a brass kettle"}])
    out = tmp_path / "out"
    config = run_config(manifest, out, provider=route, clock=clock, **ROUTES[route])

    clock.run(run_manifest, config, transport)

    (row,) = pq.read_table(out / "ledger.parquet").to_pylist()
    assert row["status"] == "succeeded"
    first, second = sorted(pq.read_table(out / "attempts.parquet").to_pylist(),
                           key=lambda a: a["attempt"])  # fmt: skip
    assert first["outcome"] == "rate_limit"
    # The date has whole seconds: the wait is the 30 s asked, less the part second cut off,
    # plus at most the half second of jitter.
    assert ASKED_S - 1 <= first["wait_s"] <= ASKED_S + 0.5
    waited = (second["started_at"] - first["finished_at"]).total_seconds()
    assert ASKED_S - 1 <= waited <= ASKED_S + 1
