"""The spending cap: committed spend never passes it, whatever is in flight."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.budget import SpendingCap, attempt_cost, worst_case
from pipeline.emulator import BackgroundEmulator, EmulatorConfig, Payload, parse_latency
from pipeline.prices import PriceTable
from pipeline.types import Job, Outcome, OutcomeKind
from tests.helpers import TEST_KEY, write_csv

FLASH_1K = 0.067


def job(images: int = 0, model: str = "gemini-3.1-flash-image-preview") -> Job:
    return Job("r", 1, "p", tuple(f"/x/{i}.png" for i in range(images)), model, None, None)


def test_reservations_never_pass_the_cap() -> None:
    cap = SpendingCap(cap_usd=0.21)
    assert [cap.reserve(FLASH_1K) for _ in range(4)] == [True, True, True, False]
    cap.settle(FLASH_1K, 0.0)  # a 503: nothing was billed, the room comes back
    assert cap.reserve(FLASH_1K)
    assert cap.spent_usd + cap.reserved_usd <= 0.21


def test_attempt_costs_follow_the_price_table() -> None:
    prices = PriceTable(refusal_usd=0.01)
    success = Outcome(OutcomeKind.SUCCESS, "STOP")
    refusal = Outcome(OutcomeKind.REFUSAL, "IMAGE_SAFETY")
    error = Outcome(OutcomeKind.TRANSIENT, "SERVER_ERROR_503")
    timeout = Outcome(OutcomeKind.TRANSIENT, "TIMEOUT")
    assert attempt_cost(success, True, job(), "1K", prices) == FLASH_1K
    assert attempt_cost(refusal, False, job(), "1K", prices) == 0.01
    assert attempt_cost(error, False, job(), "1K", prices) == 0.0
    assert attempt_cost(timeout, True, job(), "1K", prices) == worst_case(job(), "1K", prices)
    pro = job(images=2, model="gemini-3-pro-image-preview")
    assert attempt_cost(success, True, pro, "4K", prices) == pytest.approx(0.24 + 2 * 0.0011)


def test_the_cap_holds_under_64_requests_in_flight(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "m.csv", [{"id": f"r{i:03d}", "prompt": f"p {i}"}
                                              for i in range(300)])  # fmt: skip
    cap = 1.0  # 14 images at $0.067: the 15th would pass it
    config = EmulatorConfig(latency=parse_latency("uniform:0.2-0.6"), payload=Payload.COMPACT)
    with BackgroundEmulator(config) as server:
        result = subprocess.run(
            [sys.executable, "-m", "pipeline", "run", str(manifest), "--out", str(tmp_path / "o"),
             "--base-url", server.base_url, "--concurrency", "64", "--max-cost", str(cap)],
            env={**os.environ, "GEMINI_API_KEY": TEST_KEY}, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        billed = server.app.stats_snapshot()["billed"]
    assert result.returncode == 4, result.stderr
    assert "spending cap" in result.stderr
    assert "rows left" in result.stderr
    assert isinstance(billed, int)
    assert billed * FLASH_1K <= cap
    assert billed == 14  # the cap is used, not just respected
    rows = pq.read_table(tmp_path / "o" / "ledger.parquet").to_pylist()
    assert sum(r["cost_usd"] for r in rows) == pytest.approx(billed * FLASH_1K)
