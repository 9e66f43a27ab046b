"""SIGKILL a real run at random moments, rerun each time: nothing lost, nothing paid twice."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline.commands.verify import verify
from pipeline.emulator import BackgroundEmulator, EmulatorConfig, Payload, parse_latency
from tests.commandline import nanobatch
from tests.helpers import TEST_KEY, journal_records, write_csv

ROWS = 240
CONCURRENCY = 16
KILLS = 4


def recorded_ids(out: Path) -> set[str]:
    """Rows durable at this moment: the folded ledger plus the journal's intact records."""
    ids: set[str] = set()
    if (out / "ledger.parquet").exists():
        ids.update(pq.read_table(out / "ledger.parquet", columns=["row_id"])["row_id"].to_pylist())
    ids.update(r["row_id"] for r in journal_records(out / "ledger.journal"))
    return ids


def wait_until_sending(emulator: BackgroundEmulator, before: object) -> None:
    """Block until the emulator has seen a request from the new run (startup is ~0.7 s)."""
    deadline = time.monotonic() + 30
    while emulator.app.stats_snapshot()["requests"] == before and time.monotonic() < deadline:
        time.sleep(0.02)


def start(manifest: Path, out: Path, base_url: str) -> subprocess.Popen[bytes]:
    args = ["run", str(manifest), "--out", str(out), "--base-url", base_url,
            "--concurrency", str(CONCURRENCY), "--image-size", "512"]  # fmt: skip
    env = {**os.environ, "GEMINI_API_KEY": TEST_KEY}
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_sigkill_at_random_moments_loses_nothing_and_pays_once(tmp_path: Path) -> None:
    rng = random.Random(20261121)
    manifest = write_csv(tmp_path / "m.csv", [{"id": f"r{i:03d}", "prompt": f"shoe {i}"}
                                             for i in range(ROWS)])  # fmt: skip
    out = tmp_path / "out"
    kills: list[tuple[datetime, set[str]]] = []
    # The server in a thread of this process, with small images: the run is the process under
    # test, and a kill still finds it at any step of a row (send, parse, write, fsync, record).
    config = EmulatorConfig(latency=parse_latency("uniform:0.025-0.15"), seed=5,
                            payload=Payload.COMPACT)  # fmt: skip
    with BackgroundEmulator(config) as emulator:
        for _ in range(KILLS):
            before = emulator.app.stats_snapshot()["requests"]
            process = start(manifest, out, emulator.base_url)
            wait_until_sending(emulator, before)
            time.sleep(rng.uniform(0.025, 0.6))  # a random moment of the sending phase
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills.append((datetime.now(UTC), recorded_ids(out)))
        # The resume is not killed: it runs in this process.
        final = nanobatch("run", str(manifest), "--out", str(out), "--base-url",
                          emulator.base_url, "--concurrency", str(CONCURRENCY), "--image-size",
                          "512", key=TEST_KEY)  # fmt: skip
        assert final.returncode == 0, final.stderr
        stats: dict[str, Any] = emulator.app.stats_snapshot()

    rows = pq.read_table(out / "ledger.parquet").to_pylist()
    assert sorted(r["row_id"] for r in rows) == [f"r{i:03d}" for i in range(ROWS)]
    assert {r["status"] for r in rows} == {"succeeded"}
    check = verify(out)
    assert check.problems == []
    assert check.unreferenced == []
    assert not list(out.glob("**/.tmp-*"))
    # Paid twice only for what was in flight at a kill, never more.
    assert stats["billed_duplicates"] <= CONCURRENCY * KILLS
    assert stats["billed"] - stats["billed_duplicates"] == ROWS
    # A row recorded before a kill was never requested again after it.
    attempts = pq.read_table(out / "attempts.parquet").to_pylist()
    for killed_at, recorded in kills:
        again = {a["row_id"] for a in attempts if a["started_at"] > killed_at} & recorded
        assert again == set(), f"rows recorded before a kill were sent again: {sorted(again)}"
    # At least one kill landed mid-run: some rows recorded, some left for the next run.
    assert any(0 < len(recorded) < ROWS for _, recorded in kills)
