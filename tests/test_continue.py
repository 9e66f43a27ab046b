"""The command to continue a rerun of finished rows: it finishes the job, and never pays
again for a row that an earlier part of the job already redid."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.core.options import parse_rerun
from pipeline.core.types import Status
from pipeline.emulator import BackgroundEmulator, EmulatorConfig, Payload
from pipeline.plan.done import done_rows
from pipeline.store.ledger import Ledger, LedgerRecord
from tests.helpers import TEST_KEY, write_csv
from tests.test_cli import nanobatch

ROWS = 10
FLASH_1K = 0.067


def continued(stderr: str) -> list[str]:
    """The arguments of the printed "to continue" command."""
    line = next(x for x in stderr.splitlines() if "To continue: " in x)
    command = shlex.split(line.split("To continue: ", 1)[1])
    assert command[0] == "nanobatch"
    return command[1:]


def test_continuing_a_rerun_of_succeeded_rows_redoes_each_row_once(tmp_path: Path) -> None:
    rows = [{"id": f"r{i}", "prompt": f"a lamp {i}"} for i in range(ROWS)]
    manifest = write_csv(tmp_path / "m.csv", rows)
    out = tmp_path / "out"
    with BackgroundEmulator(EmulatorConfig(api_key=TEST_KEY, payload=Payload.COMPACT)) as server:
        base = ["run", str(manifest), "--out", str(out), "--base-url", server.base_url]
        assert nanobatch(*base, "--concurrency", "2").returncode == 0

        # Redo every row: a trial on three first, then the rest under a cap over the whole
        # job that stops part-way, then the printed command once more.
        trial = nanobatch(*base, "--concurrency", "2", "--rerun", "succeeded", "--limit", "3")
        assert trial.returncode == 0, trial.stderr
        assert server.app.stats_snapshot()["billed"] == ROWS + 3
        capped = nanobatch(*continued(trial.stderr), "--max-cost", f"{16.5 * FLASH_1K:.2f}")
        assert capped.returncode == 4, capped.stderr
        assert ROWS + 3 < int(str(server.app.stats_snapshot()["billed"])) < 2 * ROWS
        final = nanobatch(*continued(capped.stderr))
        assert final.returncode == 0, final.stderr
        stats = server.app.stats_snapshot()
    assert stats["billed"] == 2 * ROWS  # every row redone once, as asked: none twice
    assert stats["billed_duplicates"] == ROWS


@pytest.mark.parametrize("rerun", ["succeeded", "refused", "all", "failed,refused"])
def test_rows_finished_since_the_pin_are_left_alone(tmp_path: Path, rerun: str) -> None:
    pin = datetime.now(UTC)
    ledger = Ledger(tmp_path)
    ledger.open()
    for status in Status.SUCCEEDED, Status.REFUSED, Status.FAILED:
        for when, age in (("old", -1), ("new", 1)):
            ledger.append([LedgerRecord(
                row_id=f"{status.value}-{when}", line=1, status=status.value, reason="",
                model="m", prompt="p", finished_at=pin + timedelta(seconds=age),
            )])  # fmt: skip
    ledger.close()
    selected = parse_rerun(rerun)
    unpinned = set(done_rows(ledger, selected).ids.to_pylist())
    pinned = set(done_rows(ledger, selected, pin).ids.to_pylist())
    # A failed row is retried as --rerun says (it was never paid for in full); a succeeded
    # or refused one that --rerun selects is sent again only if it finished before the pin.
    again = {s.value for s in selected} - {"failed"}
    assert pinned - unpinned == {f"{s}-new" for s in again}
