"""A batch job Google no longer knows (deleted in its console, or by another tool): the next run
hands its rows on as a failed job's, in a new job, instead of stopping on the same 404 every
time it is started; ``batch cancel`` finds nothing there to cancel."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline.commands.batchjobs import batch_cancel
from pipeline.core.clock import VirtualClock
from pipeline.core.config import RunMode
from pipeline.emulator import EmulatorTransport, parse_batch_delay
from pipeline.run.scheduler import run_manifest
from pipeline.store.batchbook import BatchBook
from tests.batch_wire_helpers import batch_config, wire
from tests.helpers import run, run_config, write_csv

ROWS = 3


async def test_a_job_deleted_at_google_hands_its_rows_on(
    tmp_path: Path, clock: VirtualClock
) -> None:
    manifest = write_csv(tmp_path / "m.csv", [{"id": f"r{i}", "prompt": f"a cup {i}"}
                                              for i in range(ROWS)])  # fmt: skip
    config = run_config(manifest, tmp_path / "out", mode=RunMode.BATCH, clock=clock)
    emulated = batch_config(clock=clock.monotonic, batch_delay=parse_batch_delay("uniform:60-90"))
    out = config.out_dir
    async with wire(emulated) as (route, client, app):
        stop_at = config.clock.now() + timedelta(seconds=2)  # the job created, still running
        await run_manifest(replace(config, stop_at=stop_at), EmulatorTransport(app))
        [gone] = BatchBook.load(out)
        assert gone.batch_name is not None
        await route.delete_job(client, gone.batch_name)  # someone else's clean-up
        cancelled = await batch_cancel(out, route, client, clock.now())
        assert (cancelled.not_created, cancelled.failed) == ([gone.job_id], [])  # nothing to do

        result = await run(config, app)
        assert result.halt is None
        assert not (out / "ledger.parquet").exists()  # cancelled: its rows wait for the next run
        result = await run(config, app)
        stats: dict[str, Any] = app.stats_snapshot()

    assert result.halt is None
    book = {job.job_id: job for job in BatchBook.load(out)}
    assert (book[gone.job_id].state, book[gone.job_id].folded) == ("FAILED", True)
    [fresh] = [job for job in book.values() if job.job_id != gone.job_id]
    assert sorted(fresh.rows) == [f"r{i}" for i in range(ROWS)]
    rows = pq.read_table(out / "ledger.parquet").to_pylist()
    assert {(r["row_id"], r["status"], r["batch_job"]) for r in rows} == {
        (f"r{i}", "succeeded", fresh.batch_name) for i in range(ROWS)
    }
    assert (stats["batch_jobs_created"], stats["batch_billed"], stats["billed"]) == (2, ROWS, 0)
