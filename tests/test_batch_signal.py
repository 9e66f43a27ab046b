"""A batch run stopped by a signal (Ctrl-C, SIGTERM) while its jobs are still running at
Google: exit 4 (jobs left running), the jobs neither cancelled nor forgotten (the book and
status.json name them), and the next run adopts them instead of creating them again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipeline.emulator import BackgroundEmulator, EmulatorConfig, Payload, parse_batch_delay
from pipeline.run.batch.phases import KILL_ENV, POLL_ENV
from pipeline.store.batchbook import BatchBook
from pipeline.store.bookjob import Phase
from tests.commandline import nanobatch
from tests.emulator.emulator_helpers import FakeClock
from tests.helpers import TEST_KEY, rows_across_models

ROWS = 8
MODELS = ("gemini-3.1-flash-image-preview", "gemini-2.5-flash-image")  # one job each


def start(manifest: Path, out: Path, base_url: str) -> subprocess.Popen[bytes]:
    args = ["run", str(manifest), "--out", str(out), "--base-url", base_url, "--mode", "batch"]
    env = {**os.environ, "GEMINI_API_KEY": TEST_KEY, POLL_ENV: "0.1"}
    env.pop(KILL_ENV, None)
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_for(what: Callable[[], bool], process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while not what():
        assert process.poll() is None, f"the run ended first (exit {process.returncode})"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def created_jobs(out: Path) -> list[str]:
    return [job.batch_name for job in BatchBook.load(out) if job.batch_name is not None]


def test_a_signal_leaves_the_jobs_running_exits_4_and_the_rerun_adopts_them(
    tmp_path: Path,
) -> None:
    manifest = rows_across_models(tmp_path / "m.csv", ROWS, "a kettle", MODELS)
    out = tmp_path / "out"
    # Jobs that take 5-6 s of the emulator's clock, which stands still until the two stopped
    # runs below have come and gone: however slow the machine, the jobs are running throughout.
    clock = FakeClock()
    config = EmulatorConfig(batch_delay=parse_batch_delay("uniform:5-6"), seed=3,
                            payload=Payload.COMPACT, clock=clock)  # fmt: skip
    with BackgroundEmulator(config) as emulator:

        def stats() -> dict[str, Any]:
            return emulator.app.stats_snapshot()

        # Ctrl-C once both jobs exist at Google.
        first = start(manifest, out, emulator.base_url)
        wait_for(lambda: len(created_jobs(out)) == len(MODELS), first)
        first.send_signal(signal.SIGINT)
        assert first.wait(timeout=60) == 4
        assert stats()["batch_jobs_created"] == len(MODELS)
        jobs = BatchBook.load(out)
        assert [(j.phase, j.cancel_requested) for j in jobs] == [(Phase.CREATED, False)] * 2
        status = json.loads((out / "status.json").read_text())
        assert status["halt"] == "interrupted"
        assert sorted(status["batch"]["submitted_jobs"]) == sorted(created_jobs(out))
        assert status["batch"]["submitted_rows"] == ROWS
        assert not (out / "ledger.parquet").exists()  # nothing folded: every row pending

        # SIGTERM to a rerun once it is talking to Google: it too leaves them running.
        before = stats()["requests"]
        second = start(manifest, out, emulator.base_url)
        wait_for(lambda: stats()["requests"] != before, second)
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 4
        assert stats()["batch_jobs_created"] == len(MODELS)  # adopted, not created again

        # The jobs finish; the next run folds them, creating none.
        clock.advance(6)
        resumed = nanobatch("run", str(manifest), "--out", str(out), "--base-url",
                            emulator.base_url, "--mode", "batch", key=TEST_KEY,
                            env={POLL_ENV: "0.1", KILL_ENV: None})  # fmt: skip
        assert resumed.returncode == 0, resumed.stderr
        final = stats()

    assert final["batch_jobs_created"] == len(MODELS)
    assert (final["batch_billed"], final["billed"], final["billed_duplicates"]) == (ROWS, 0, 0)
    rows = pq.read_table(out / "ledger.parquet").to_pylist()
    assert sorted(r["row_id"] for r in rows) == [f"r{i:03d}" for i in range(ROWS)]
    assert {(r["status"], r["tier"]) for r in rows} == {("succeeded", "batch")}
    assert {r["batch_job"] for r in rows} == set(created_jobs(out))
    billed = final["by_tier"]["batch"]["billed_usd"]
    assert sum(r["cost_usd"] for r in rows) == pytest.approx(billed, abs=1e-6)
