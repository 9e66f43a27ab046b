"""`nanobatch status`, and verify/report on a directory whose run is going or was killed."""

from __future__ import annotations

import json
import re
import signal
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import anyio
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.commands.progress import STATUS_FILE, snapshot
from pipeline.commands.run import note_submitted
from pipeline.commands.status import folder_status, format_status
from pipeline.core.clock import VirtualClock
from pipeline.core.config import RunMode
from pipeline.emulator.batchspecs import parse_batch_delay
from tests.commandline import nanobatch
from tests.helpers import emulator, run, run_config, slow_emulator, start_run, write_csv


def test_status_verify_and_report_see_a_running_then_killed_run(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "m.csv", [{"id": f"r{i:03d}", "prompt": f"p {i}"}
                                              for i in range(200)])  # fmt: skip
    out = tmp_path / "out"
    with slow_emulator("0.3") as slow:
        process = start_run(manifest, out, slow.base_url, "--concurrency", "4")
        try:
            deadline = time.monotonic() + 30
            while folder_status(out).rows < 4 and time.monotonic() < deadline:
                time.sleep(0.05)
            running = folder_status(out)
            assert (running.state, running.running, running.pid) == ("running", True, process.pid)
            assert running.counts["succeeded"] >= 4  # from the journal: nothing is folded yet
            assert not (out / "ledger.parquet").exists()
            assert f"running (pid {process.pid})" in format_status(running)

            shown = nanobatch("status", str(out), "--format", "json")
            assert shown.returncode == 0, shown.stderr
            assert json.loads(shown.stdout)["state"] == "running"
            checked = nanobatch("verify", str(out))
            # Not "has no ledger.parquet": the rows recorded so far are checked (exit 0, or 1
            # when an image of a request in flight is on disk before its record).
            assert checked.returncode in (0, 1), checked.stderr
            assert "a run is going" in checked.stderr
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
    killed = folder_status(out)
    assert (killed.state, killed.running) == ("crashed", False)
    assert killed.counts["succeeded"] == killed.rows >= running.rows
    reported = nanobatch("report", str(out))
    assert reported.returncode == 0, reported.stderr
    assert re.search(rf"succeeded +{killed.counts['succeeded']}\b", reported.stdout)
    assert "did not end cleanly" in reported.stderr


def test_status_of_a_finished_run_says_what_a_rerun_would_do(tmp_path: Path) -> None:
    rows = [{"id": "a", "prompt": "a lamp"}, {"id": "b", "prompt": "x #unsafe"},
            {"id": "c", "prompt": "x", "images": "gone.png"}]  # fmt: skip
    manifest = write_csv(tmp_path / "m.csv", rows)
    out = tmp_path / "out"
    anyio.run(run, run_config(manifest, out), emulator())
    found = folder_status(out)
    assert (found.state, found.running) == ("finished", False)
    assert found.counts == {"succeeded": 1, "refused": 1, "failed": 0, "invalid": 1}
    assert found.rerun["kept"] == 2
    assert found.rerun["revalidated_invalid"] == 1
    assert found.spend_usd > 0
    shown = CliRunner().invoke(app, ["status", str(out)])
    assert shown.exit_code == 0, shown.output
    assert "finished" in shown.output
    assert CliRunner().invoke(app, ["status", str(tmp_path / "nothing")]).exit_code == 2


def test_status_of_a_folder_that_is_not_there_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    for out in (tmp_path / "missing", tmp_path / "a-file"):
        result = CliRunner().invoke(app, ["status", str(out)])
        assert result.exit_code == 2, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert not (tmp_path / "missing").exists()  # looking never creates the folder


async def test_status_shows_the_batch_figures_of_a_batch_run_and_none_for_an_online_one(
    tmp_path: Path, clock: VirtualClock
) -> None:
    manifest = write_csv(tmp_path / "m.csv", [{"id": f"r{i}", "prompt": f"p {i}"}
                                              for i in range(10)])  # fmt: skip
    out = tmp_path / "out"
    app = emulator(clock=clock, batch_delay=parse_batch_delay("uniform:120-1800"))
    config = run_config(manifest, out, mode=RunMode.BATCH, clock=clock, batch_max_requests=4)
    # Stopped a minute in: three jobs left running at Google, as status.json then says.
    stopped = await run(replace(config, stop_at=clock.now() + timedelta(seconds=60)), app)
    note_submitted(stopped, config)  # as the run command does before its last status.json
    (out / STATUS_FILE).write_text(json.dumps(snapshot(stopped, batch=True)))

    found = folder_status(out)
    shown = nanobatch("status", str(out), "--format", "json")

    assert found.batch is not None
    assert len(found.batch["submitted_jobs"]) == 3
    assert found.batch["google"]["requests"] == 10
    assert json.loads(shown.stdout)["batch"] == found.batch
    text = format_status(found)
    assert "jobs left running at Google: 3, holding 10 rows" in text
    assert "pending of 10 requests" in text

    # An online run's status.json has no batch figures: the report is as it was.
    online = tmp_path / "online"
    result = await run(run_config(manifest, online, clock=clock), emulator(clock=clock))
    (online / STATUS_FILE).write_text(json.dumps(snapshot(result)))
    assert folder_status(online).batch is None
    assert "batch (" not in format_status(folder_status(online))
