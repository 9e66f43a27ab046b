"""Runs at the Flex and Priority tiers against the in-process emulator, on the virtual clock:
every row ends recorded, nothing is paid twice, and the ledger's cost is what the emulator
billed at each tier (with a fallback to standard too)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipeline.core.clock import VirtualClock
from pipeline.core.config import RetryConfig
from pipeline.core.tiers import default_concurrency
from pipeline.core.types import Tier
from pipeline.emulator import (
    EmulatorApp,
    EmulatorTransport,
    parse_latency,
)
from pipeline.run.control import Halt
from pipeline.run.result import RunResult
from pipeline.run.scheduler import run_manifest
from tests import helpers
from tests.helpers import run_config, write_csv

# The usual faults whose billing the client can know from the answer (a reset or a truncated
# body may have been billed, and is charged at its worst case), and Flex sheds.
FAULTS = "429=0.15,500=0.05,503=0.05,block=0.02,unsafe=0.03,retry_delay=7,shed=0.3"
FLEX_LATENCY = "uniform:60-900"  # Google's target: 1 to 15 minutes


def emulator(clock: VirtualClock, faults: str = FAULTS, **kwargs: Any) -> EmulatorApp:
    latencies = {
        "latency": parse_latency("uniform:5-30"),
        "flex_latency": parse_latency(FLEX_LATENCY),
    }
    return helpers.emulator(faults, clock, seed=5, **{**latencies, **kwargs})


def rows(n: int, **extra: str) -> list[dict[str, str]]:
    return [{"id": f"r{i:03d}", "prompt": f"a desk lamp, angle {i}", **extra} for i in range(n)]


def ledger(out: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pq.read_table(out / "ledger.parquet").to_pylist()
    return rows


def stats(app: EmulatorApp) -> dict[str, Any]:
    return dict(app.stats_snapshot())


async def run(config: Any, app: EmulatorApp) -> RunResult:
    return await run_manifest(config, EmulatorTransport(app))


def assert_paid_once_and_as_billed(app: EmulatorApp, recorded: list[dict[str, Any]]) -> None:
    counters = stats(app)
    assert counters["early_retries"] == 0
    assert counters["billed_duplicates"] == 0
    assert sum(r["cost_usd"] for r in recorded) == pytest.approx(counters["billed_usd"], abs=1e-5)
    for tier, billed in counters["by_tier"].items():  # and tier by tier
        cost = sum(r["cost_usd"] for r in recorded if r["tier"] == tier)
        assert cost == pytest.approx(billed["billed_usd"], abs=1e-5), tier


async def test_a_flex_run_under_sheds_and_faults_ends_recorded_paid_once_at_the_flex_price(
    tmp_path: Path, clock: VirtualClock
) -> None:
    manifest = write_csv(tmp_path / "m.csv", rows(150))
    app = emulator(clock)
    concurrency = default_concurrency(Tier.FLEX)
    config = run_config(manifest, tmp_path / "out", tier=Tier.FLEX, concurrency=concurrency,
                        clock=clock)  # fmt: skip

    result = await run(config, app)

    recorded = ledger(tmp_path / "out")
    assert len(recorded) == 150
    assert result.halt is None
    assert {r["status"] for r in recorded} <= {"succeeded", "refused", "failed"}
    assert {(r["provider"], r["tier"], r["tier_reported"]) for r in recorded
            if r["status"] == "succeeded"} == {("gemini", "flex", True)}  # fmt: skip
    assert_paid_once_and_as_billed(app, recorded)
    counters = stats(app)
    assert counters["by_tier"]["flex"]["shed"] > 0
    assert result.retried["SHED"] > 0
    assert counters["billed_usd"] == pytest.approx(counters["billed"] * 0.067 / 2)
    # A row Flex kept shedding fails as SHED (a rerun sends it again); none fell back.
    assert result.fell_back == 0
    attempts = pq.read_table(tmp_path / "out" / "attempts.parquet").to_pylist()
    assert len(attempts) == counters["requests"]


async def test_rows_flex_keeps_shedding_are_resent_at_standard_with_the_fallback(
    tmp_path: Path, clock: VirtualClock
) -> None:
    manifest = write_csv(tmp_path / "m.csv", [*rows(6), {"id": "busy", "prompt": "a vase #shed"}])
    app = emulator(clock, faults="")
    retry = RetryConfig(fallback=Tier.STANDARD)
    config = run_config(manifest, tmp_path / "out", tier=Tier.FLEX, retry=retry, clock=clock)

    result = await run(config, app)

    by_id = {r["row_id"]: r for r in ledger(tmp_path / "out")}
    assert {r["status"] for r in by_id.values()} == {"succeeded"}
    assert (by_id["busy"]["tier"], by_id["r000"]["tier"]) == ("standard", "flex")
    assert result.fell_back == 1
    counters = stats(app)
    assert counters["by_tier"]["flex"]["shed"] == RetryConfig().max_sheds
    assert counters["by_tier"]["standard"]["billed"] == 1
    assert by_id["busy"]["cost_usd"] == pytest.approx(0.067)  # paid at standard, as served
    assert_paid_once_and_as_billed(app, list(by_id.values()))


async def test_a_tier_the_route_refuses_is_stopped_once_and_its_rows_go_standard(
    tmp_path: Path, clock: VirtualClock
) -> None:
    manifest = write_csv(tmp_path / "m.csv", rows(40))
    model = "gemini-3.1-flash-image-preview"
    app = emulator(clock, faults="", no_flex_models=frozenset({model}))
    retry = RetryConfig(fallback=Tier.STANDARD)
    config = run_config(manifest, tmp_path / "out", tier=Tier.FLEX, retry=retry, concurrency=4,
                        clock=clock)  # fmt: skip

    result = await run(config, app)

    recorded = ledger(tmp_path / "out")
    assert {(r["status"], r["tier"]) for r in recorded} == {("succeeded", "standard")}
    counters = stats(app)
    # Only requests already made at Flex met the refusal: never one per row.
    assert counters["by_status"]["400"] <= 2 * 4
    assert list(result.tiers_stopped) == [f"flex for {model}"]
    assert_paid_once_and_as_billed(app, recorded)


async def test_without_a_fallback_a_refused_tier_stops_the_run_before_any_row_fails(
    tmp_path: Path, clock: VirtualClock
) -> None:
    manifest = write_csv(tmp_path / "m.csv", rows(30))
    app = emulator(clock, faults="", no_flex_models=frozenset({"gemini-3.1-flash-image-preview"}))
    config = run_config(manifest, tmp_path / "out", tier=Tier.FLEX, concurrency=4, clock=clock)

    result = await run(config, app)

    assert result.halt is Halt.API
    assert result.stopped is not None
    assert result.stopped.reason == "TIER_NOT_SUPPORTED"
    assert stats(app)["by_status"]["400"] <= 2 * 4
    assert not (tmp_path / "out" / "ledger.parquet").exists() or ledger(tmp_path / "out") == []


async def test_priority_rows_are_priced_at_priority_and_a_tier_column_wins(
    tmp_path: Path, clock: VirtualClock
) -> None:
    manifest = write_csv(
        tmp_path / "m.csv", [*rows(5, tier="priority"), {"id": "std", "prompt": "a chair"}]
    )
    app = emulator(clock, faults="")
    config = run_config(manifest, tmp_path / "out", image_size="2K", clock=clock)

    await run(config, app)

    by_id = {r["row_id"]: r for r in ledger(tmp_path / "out")}
    assert by_id["r000"]["tier"] == "priority"
    assert by_id["std"]["tier"] == "standard"
    assert by_id["r000"]["cost_usd"] == pytest.approx(0.101 * 1.8)
    assert by_id["std"]["tier_reported"] is False  # a request naming no tier: not reported
    counters = stats(app)
    assert counters["by_tier"]["priority"]["billed"] == 5
    assert_paid_once_and_as_billed(app, list(by_id.values()))
