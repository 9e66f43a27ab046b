"""A batch run killed (SIGKILL) while folding a job's results, then resumed: the job's results
are folded again, and every row is recorded once, at what Google billed for it (the ledger's
cost and the spend both equal the bill), whatever of its records the kill cut off. And a job
is journaled folded only once its rows' records are durable: a kill just after that record
never leaves a row that the next run would send (and pay for) again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import pyarrow.parquet as pq
import pytest

from pipeline.core.clock import VirtualClock
from pipeline.core.config import RunMode
from pipeline.emulator import BackgroundEmulator, EmulatorConfig, Payload, parse_batch_delay
from pipeline.run.batch.phases import KILL_ENV, POLL_ENV
from pipeline.store.batchbook import BatchBook
from pipeline.store.bookjob import Phase
from pipeline.store.diskspace import DiskGuard
from pipeline.store.ledger import AttemptRecord, Ledger, LedgerRecord
from pipeline.store.spend import spent_in
from tests.commandline import nanobatch
from tests.helpers import TEST_KEY, emulator, journal_records, run, run_config, write_csv

ROWS = 6


def test_a_kill_mid_fold_then_a_rerun_records_each_row_once_at_what_was_billed(
    tmp_path: Path,
) -> None:
    manifest = write_csv(tmp_path / "m.csv", [{"id": f"r{i}", "prompt": f"a cup {i}"}
                                              for i in range(ROWS)])  # fmt: skip
    out = tmp_path / "out"
    args = ["run", str(manifest), "--out", str(out), "--mode", "batch"]
    config = EmulatorConfig(batch_delay=parse_batch_delay("uniform:0.1-0.2"), seed=4,
                            payload=Payload.COMPACT)  # fmt: skip
    with BackgroundEmulator(config) as emulator:
        env = {**os.environ, "GEMINI_API_KEY": TEST_KEY, POLL_ENV: "0.1", KILL_ENV: "folding:3"}
        # Killed as the third row's records reach the writer: its images are stored, its
        # records not yet durable; the rows before it may be recorded whole, or in part.
        killed = subprocess.run([sys.executable, "-m", "pipeline", *args, "--base-url",
                                 emulator.base_url], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, timeout=120, check=False)  # fmt: skip
        assert killed.returncode == -signal.SIGKILL
        resumed = nanobatch(*args, "--base-url", emulator.base_url, key=TEST_KEY,
                            env={POLL_ENV: "0.1", KILL_ENV: None})  # fmt: skip
        assert resumed.returncode == 0, resumed.stderr
        stats: dict[str, Any] = emulator.app.stats_snapshot()

    assert (stats["batch_jobs_created"], stats["batch_billed"], stats["billed"]) == (1, ROWS, 0)
    billed = stats["by_tier"]["batch"]["billed_usd"]
    rows = pq.read_table(out / "ledger.parquet").to_pylist()
    assert sorted(r["row_id"] for r in rows) == [f"r{i}" for i in range(ROWS)]
    assert {(r["status"], r["tier"]) for r in rows} == {("succeeded", "batch")}
    assert sum(r["cost_usd"] for r in rows) == pytest.approx(billed, abs=1e-6)
    assert spent_in(out) == pytest.approx(billed, abs=1e-6)  # what --max-cost counts
    attempts = pq.read_table(out / "attempts.parquet").to_pylist()
    assert sorted(a["row_id"] for a in attempts) == [f"r{i}" for i in range(ROWS)]
    # The resumed run's own figures count each row once too.
    status = json.loads((out / "status.json").read_text())
    assert status["counts"]["succeeded"] + status["skipped"] == ROWS


async def test_a_job_is_journaled_folded_only_once_its_rows_records_are_durable(
    tmp_path: Path, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Refusals: a row without an image, which nothing on disk could adopt; had the book said
    # "folded" before its record was durable, a kill then would send it again.
    manifest = write_csv(tmp_path / "m.csv", [{"id": f"r{i}", "prompt": f"x {i} #unsafe"}
                                              for i in range(ROWS)])  # fmt: skip
    out = tmp_path / "out"
    journaled_with: list[bool] = []  # at each "folded" record: its rows durable already?
    append, record = DiskGuard.append, BatchBook.record

    async def slow_disk(
        self: DiskGuard,
        ledger: Ledger,
        rows: Sequence[LedgerRecord],
        attempts: Sequence[AttemptRecord],
    ) -> bool:
        await anyio.sleep(5)  # on the test's clock: the writer lags behind the fold
        return await append(self, ledger, rows, attempts)

    def watched(self: BatchBook, job_id: str, kind: Phase | str, **fields: Any) -> Any:
        if kind == Phase.FOLDED:
            durable = {r["row_id"] for r in journal_records(out / "ledger.journal")}
            journaled_with.append(set(self.jobs[job_id].rows) <= durable)
        return record(self, job_id, kind, **fields)

    monkeypatch.setattr(DiskGuard, "append", slow_disk)
    monkeypatch.setattr(BatchBook, "record", watched)
    app = emulator(clock=clock, batch_delay=parse_batch_delay("uniform:60-120"))

    await run(run_config(manifest, out, mode=RunMode.BATCH, clock=clock), app)

    assert journaled_with == [True]
    rows = pq.read_table(out / "ledger.parquet").to_pylist()
    assert {(r["status"], r["tier"]) for r in rows} == {("refused", "batch")}
