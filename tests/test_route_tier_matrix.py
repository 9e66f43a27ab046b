"""Every route at every tier, under the usual fault mix, in-process on the virtual clock: every
row ends terminal, no retry comes early, and the ledger's cost is what the emulator billed.

Answers cut off after their 200 (``reset``, ``truncate``) are billed as Google bills them (the
model ran, its 200 went out): the ledger's cost equals the bill exactly, and the only requests
paid twice are cut answers the client had to send again, which ``attempts.parquet`` already
marks ``possibly_billed``. With the emulator's default, where those faults cost nothing, nothing
is paid twice, and the cost equals the bill once the cut answers (counted as spent because the
client cannot tell) are taken out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipeline.core.clock import VirtualClock
from pipeline.core.config import ApiKey, RunConfig
from pipeline.core.routes import Route
from pipeline.core.tiers import default_concurrency
from pipeline.core.types import Tier
from pipeline.emulator import parse_latency
from tests import helpers
from tests.helpers import TEST_KEY, run_config, write_csv
from tests.vertex_helpers import PROJECT, adc_env, service_account

ROWS = 20
# Besides the drawn faults, rows that meet each kind for sure: cut off once or twice, refused.
TRIGGERED = ("#resetx1", "#truncatex2", "#unsafe", "#block")
# The usual mix, with the cut answers in it. A 2 s retry delay: new-api's upstream_error drops
# Google's RetryInfo and the client's own 3 s backoff must outlast it.
FAULTS = (
    "429=0.15,500=0.05,503=0.05,reset=0.04,truncate=0.04,block=0.03,unsafe=0.03,"
    "retry_delay=2,shed=0.25"
)
ROUTES: dict[Route, dict[str, Any]] = {
    Route.GEMINI: {},
    Route.VERTEX: {"project": PROJECT, "location": "global", "api_key": None},
    Route.OPENAI_CHAT: {
        "base_url": "http://emulator.invalid/api/v1",
        "model": "google/gemini-3.1-flash-image-preview",
        "api_key": ApiKey(TEST_KEY, "NANOBATCH_GATEWAY_KEY"),
    },
}
TERMINAL = {"succeeded", "refused", "failed"}


def config(route: Route, tier: Tier, tmp_path: Path, clock: VirtualClock) -> RunConfig:
    rows = [{"id": f"r{i:03d}", "prompt": f"a teapot, view {i}"} for i in range(ROWS)]
    for row, trigger in zip(rows, TRIGGERED, strict=False):
        row["prompt"] += f" {trigger}"
    manifest = write_csv(tmp_path / "m.csv", rows)
    return run_config(manifest, tmp_path / "out", provider=route, tier=tier, clock=clock,
                      concurrency=default_concurrency(tier), **ROUTES[route])  # fmt: skip


def is_cut(attempt: dict[str, Any]) -> bool:
    """An attempt that may have been billed although no whole answer came back."""
    return bool(attempt["possibly_billed"]) and attempt["outcome"] not in ("success", "refusal")


async def run(
    route: Route, tier: Tier, tmp_path: Path, clock: VirtualClock, *, cuts_billed: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """One run: the ledger's rows, the attempts, the emulator's counters, after checking what
    holds either way (every row terminal, no early retry, the rows' cost their attempts')."""
    app = helpers.emulator(
        FAULTS,
        clock,
        seed=13,
        latency=parse_latency("uniform:5-30"),
        flex_latency=parse_latency("uniform:60-900"),
        chat_errors="mixed",
        bearer="issued" if route is Route.VERTEX else "any",
        cut_answers_billed=cuts_billed,
    )
    out = tmp_path / "out"
    result = await helpers.run(config(route, tier, tmp_path, clock), app)
    assert result.halt is None
    recorded: list[dict[str, Any]] = pq.read_table(out / "ledger.parquet").to_pylist()
    tried: list[dict[str, Any]] = pq.read_table(out / "attempts.parquet").to_pylist()
    counters = dict(app.stats_snapshot())
    assert len(recorded) == ROWS
    assert {r["status"] for r in recorded} <= TERMINAL
    assert any(r["status"] == "succeeded" for r in recorded)
    assert {(r["provider"], r["tier"]) for r in recorded} == {(route.value, tier.value)}
    assert counters["early_retries"] == 0
    assert len(tried) == counters["requests"]
    assert len([a for a in tried if is_cut(a)]) >= 3  # the triggered ones at least
    spent = sum(r["cost_usd"] for r in recorded)
    assert spent == pytest.approx(sum(a["cost_usd"] for a in tried), abs=1e-9)
    return recorded, tried, counters


@pytest.mark.parametrize("tier", list(Tier))
@pytest.mark.parametrize("route", list(ROUTES))
async def test_each_route_and_tier_costs_exactly_what_google_bills(
    tmp_path: Path, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch, route: Route, tier: Tier
) -> None:
    if route is Route.VERTEX:  # OAuth from a key file whose tokens the emulator issues
        adc_env(monkeypatch, tmp_path, service_account(tmp_path / "sa.json"))

    recorded, tried, counters = await run(route, tier, tmp_path, clock, cuts_billed=True)

    spent = sum(r["cost_usd"] for r in recorded)
    assert spent == pytest.approx(counters["billed_usd"], abs=1e-9)
    for served, billed in counters["by_tier"].items():  # all of it at the tier asked for
        assert (served, billed["billed"]) == (tier.value, counters["billed"])
    # Paid twice only where an answer was cut off and the row had to be sent again: each such
    # payment is an attempt the ledger already counts as possibly billed.
    paid: dict[str, int] = {}
    for a in tried:
        paid[a["row_id"]] = paid.get(a["row_id"], 0) + bool(a["possibly_billed"])
    assert counters["billed_duplicates"] == sum(n - 1 for n in paid.values() if n)


@pytest.mark.parametrize("route", list(ROUTES))
async def test_cut_answers_the_server_did_not_bill_are_the_only_overcount(
    tmp_path: Path, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch, route: Route
) -> None:
    if route is Route.VERTEX:
        adc_env(monkeypatch, tmp_path, service_account(tmp_path / "sa.json"))

    recorded, tried, counters = await run(route, Tier.STANDARD, tmp_path, clock, cuts_billed=False)

    assert counters["billed_duplicates"] == 0
    spent = sum(r["cost_usd"] for r in recorded)
    unseen = sum(a["cost_usd"] for a in tried if is_cut(a))
    assert unseen > 0
    assert spent - unseen == pytest.approx(counters["billed_usd"], abs=1e-9)
