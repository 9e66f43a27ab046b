"""SIGKILL a real batch run in each of its six phases (at the phase hooks), resuming after
each kill in the same output directory: no job is created twice for the same rows, no row is
billed twice, nothing is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline.emulator import BackgroundEmulator, EmulatorConfig, Payload, parse_batch_delay
from pipeline.run.batch.phases import KILL_ENV, PHASES, POLL_ENV
from pipeline.store.batchbook import BatchBook
from tests.commandline import nanobatch
from tests.helpers import TEST_KEY, rows_across_models

ROWS = 24
# One job per model: three jobs, so a kill in one phase leaves later jobs for the next phases.
MODELS = ("gemini-3.1-flash-image-preview", "gemini-2.5-flash-image", "gemini-3-pro-image-preview")


def run(manifest: Path, out: Path, base_url: str, kill_at: str | None) -> int:
    args = ["run", str(manifest), "--out", str(out), "--base-url", base_url, "--mode", "batch"]
    env = {**os.environ, "GEMINI_API_KEY": TEST_KEY, POLL_ENV: "0.1"}
    env.pop(KILL_ENV, None)
    if kill_at is not None:
        env[KILL_ENV] = kill_at
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
        check=False,
    ).returncode


def test_sigkill_in_every_phase_then_resume_creates_each_job_once_and_bills_once(
    tmp_path: Path,
) -> None:
    manifest = rows_across_models(tmp_path / "m.csv", ROWS, "a vase", MODELS)
    out = tmp_path / "out"
    # The server in a thread of this process, with small images: the runs are under test.
    config = EmulatorConfig(batch_delay=parse_batch_delay("uniform:0.3-0.8"), seed=5,
                            payload=Payload.COMPACT)  # fmt: skip
    with BackgroundEmulator(config) as emulator:
        # The second checkpoint of a phase: some work of it done before the kill.
        for phase in PHASES:
            code = run(manifest, out, emulator.base_url, f"{phase}:2")
            assert code == -signal.SIGKILL, f"no kill in {phase} (exit {code})"
            if phase == "creating":  # a job exists at Google that the book does not name yet
                named = [j for j in BatchBook.load(out) if j.batch_name is not None]
                created_now = emulator.app.stats_snapshot()["batch_jobs_created"]
                assert isinstance(created_now, int)
                assert created_now > len(named)
        # The resume is not killed: it runs in this process.
        resumed = nanobatch("run", str(manifest), "--out", str(out), "--base-url",
                            emulator.base_url, "--mode", "batch", key=TEST_KEY,
                            env={POLL_ENV: "0.1", KILL_ENV: None})  # fmt: skip
        assert resumed.returncode == 0, resumed.stderr
        stats: dict[str, Any] = emulator.app.stats_snapshot()

    rows = pq.read_table(out / "ledger.parquet").to_pylist()
    assert sorted(r["row_id"] for r in rows) == [f"r{i:03d}" for i in range(ROWS)]
    assert {r["status"] for r in rows} == {"succeeded"}
    # A row whose image was stored when a kill came is adopted from disk, not paid again.
    assert {r["tier"] for r in rows if r["reason"] != "ADOPTED"} == {"batch"}
    for r in rows:
        assert (out / r["output_paths"][0]).stat().st_size > 0
    created = [job for job in BatchBook.load(out) if job.batch_name is not None]
    held = [row for job in created for row in job.rows]
    assert sorted(held) == sorted(set(held))  # no row in two jobs at Google
    assert stats["batch_jobs_created"] == len(created)  # each job created once
    assert stats["billed_duplicates"] == 0
    assert (stats["batch_billed"], stats["billed"]) == (ROWS, 0)
    assert sum(r["cost_usd"] or 0 for r in rows) > 0


def test_a_job_a_kill_left_unrecorded_is_found_though_the_books_first_line_is_damaged(
    tmp_path: Path,
) -> None:
    """Killed between creating a job at Google and recording it, then the book's first line
    (its tag, the root of the job's name there) damaged on disk: the resume still finds the
    job by its name, and never creates a second one for the same rows."""
    manifest = rows_across_models(tmp_path / "m.csv", 6, "a bowl", MODELS[:1])
    out = tmp_path / "out"
    config = EmulatorConfig(batch_delay=parse_batch_delay("0.3"), seed=6, payload=Payload.COMPACT)
    with BackgroundEmulator(config) as emulator:
        assert run(manifest, out, emulator.base_url, "creating:1") == -signal.SIGKILL
        assert emulator.app.stats_snapshot()["batch_jobs_created"] == 1
        book = out / ".batch" / "book.jsonl"
        data = bytearray(book.read_bytes())
        data[20] ^= 0x01  # the first line's checksum no longer matches
        book.write_bytes(bytes(data))
        assert run(manifest, out, emulator.base_url, None) == 0
        stats: dict[str, Any] = emulator.app.stats_snapshot()
    assert stats["batch_jobs_created"] == 1
    assert (stats["batch_billed"], stats["billed"], stats["billed_duplicates"]) == (6, 0, 0)
    rows = pq.read_table(out / "ledger.parquet").to_pylist()
    assert sorted(r["status"] for r in rows) == ["succeeded"] * 6
