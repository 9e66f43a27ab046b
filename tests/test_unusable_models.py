"""A model no row can use (unknown at the endpoint, or a quota of 0) fails its own rows only;
the run stops (exit 3) only when it is the run's default model, or the only one it used."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipeline.commands.run import run_and_report
from pipeline.core.errors import LedgerNotFolded
from pipeline.emulator import EmulatorApp, EmulatorTransport
from pipeline.run.scheduler import run_manifest
from pipeline.store.ledger import Ledger
from tests.helpers import emulator, run_config, write_csv

PRO = "gemini-3-pro-image-preview"
UNKNOWN = "gemini-9-image"


def ledger(out: Path) -> dict[str, dict[str, Any]]:
    if not (out / "ledger.parquet").exists():
        return {}
    return {row["row_id"]: row for row in pq.read_table(out / "ledger.parquet").to_pylist()}


def mixed(tmp_path: Path, model: str, n: int = 40) -> Path:
    """Every fourth row names ``model`` in its model column; the others use the default."""
    rows = [{"id": f"r{i:03d}", "prompt": f"photo {i}", "model": model if i % 4 == 0 else ""}
            for i in range(n)]  # fmt: skip
    return write_csv(tmp_path / "m.csv", rows)


def model_requests(app: EmulatorApp, status: str) -> int:
    by_status: dict[str, int] = app.stats_snapshot()["by_status"]  # type: ignore[assignment]
    return int(by_status.get(status, 0))


async def test_an_unknown_model_in_some_rows_fails_those_rows_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    app = emulator()
    config = run_config(mixed(tmp_path, UNKNOWN), tmp_path / "out", concurrency=4)

    result = await run_manifest(config, EmulatorTransport(app))

    assert result.halt is None
    rows = ledger(tmp_path / "out")
    assert len(rows) == 40
    bad = [row for row in rows.values() if row["model"] == UNKNOWN]
    assert len(bad) == 10
    assert {row["status"] for row in bad} == {"failed"}
    assert {row["reason"] for row in bad} == {"MODEL_NOT_FOUND"}
    assert all(UNKNOWN in row["error"] and "`model` column" in row["error"] for row in bad)
    assert all(row["status"] == "succeeded" for row in rows.values() if row["model"] != UNKNOWN)
    # Known after the first 404: the rest were never sent (at most the ones in flight were).
    assert model_requests(app, "404") <= 4
    assert sum(row["attempts"] for row in bad) == model_requests(app, "404")


async def test_a_model_without_quota_is_never_retried_and_fails_only_its_rows(
    tmp_path: Path,
) -> None:
    app = emulator(no_quota_models=frozenset({PRO}))
    config = run_config(mixed(tmp_path, PRO), tmp_path / "out", concurrency=4)

    result = await run_manifest(config, EmulatorTransport(app))

    assert result.halt is None
    rows = ledger(tmp_path / "out")
    pro = [row for row in rows.values() if row["model"] == PRO]
    assert {(row["status"], row["reason"]) for row in pro} == {("failed", "NO_QUOTA")}
    assert all("no quota" in row["error"] and PRO in row["error"] for row in pro)
    assert all(row["attempts"] <= 1 for row in pro)  # never retried
    assert model_requests(app, "429") <= 4
    assert sum(row["status"] == "succeeded" for row in rows.values()) == 30


def test_an_unknown_default_model_stops_the_run_with_exit_3(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "m.csv", [{"id": f"r{i}", "prompt": "p"} for i in range(40)])
    app = emulator()
    errors: list[str] = []
    config = run_config(manifest, tmp_path / "out", concurrency=4, model=UNKNOWN)

    code = run_and_report(config, EmulatorTransport(app), argv=[], out=lambda _: None,
                          err=errors.append)  # fmt: skip

    assert code == 3
    assert ledger(tmp_path / "out") == {}  # every row stays pending
    assert model_requests(app, "404") <= 4
    assert any(UNKNOWN in line and "--model" in line for line in errors)


def test_no_quota_for_the_default_model_stops_the_run_with_exit_3(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "m.csv", [{"id": f"r{i}", "prompt": "p"} for i in range(40)])
    app = emulator(no_quota_models=frozenset({PRO}))
    errors: list[str] = []
    config = run_config(manifest, tmp_path / "out", concurrency=4, model=PRO)

    code = run_and_report(config, EmulatorTransport(app), argv=[], out=lambda _: None,
                          err=errors.append)  # fmt: skip

    assert code == 3
    assert ledger(tmp_path / "out") == {}
    assert model_requests(app, "429") <= 4  # no retries, no spinning
    assert any("no quota" in line and PRO in line for line in errors)


def test_when_every_row_names_an_unknown_model_the_run_exits_3(tmp_path: Path) -> None:
    rows = [{"id": f"r{i}", "prompt": "p", "model": UNKNOWN} for i in range(20)]
    app = emulator()
    errors: list[str] = []
    config = run_config(write_csv(tmp_path / "m.csv", rows), tmp_path / "out", concurrency=4)

    code = run_and_report(config, EmulatorTransport(app), argv=[], out=lambda _: None,
                          err=errors.append)  # fmt: skip

    assert code == 3
    assert {row["reason"] for row in ledger(tmp_path / "out").values()} == {"MODEL_NOT_FOUND"}
    assert any(" (id r" in line and "`model` column" in line for line in errors)


def test_a_run_level_error_inside_the_pool_is_one_line_not_a_group_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = write_csv(tmp_path / "m.csv", [{"id": f"r{i}", "prompt": "p"} for i in range(8)])
    appended: list[int] = []

    def append(self: Ledger, rows: Any, attempts: Any) -> None:
        appended.append(1)
        raise LedgerNotFolded("the ledger's disk went away")

    monkeypatch.setattr(Ledger, "append", append)
    errors: list[str] = []
    config = run_config(manifest, tmp_path / "out", concurrency=2)

    code = run_and_report(config, EmulatorTransport(emulator()), argv=[], out=lambda _: None,
                          err=errors.append)  # fmt: skip

    assert appended  # raised inside the task group, by the ledger writer
    assert code == LedgerNotFolded.exit_code
    assert errors == ["nanobatch: the ledger's disk went away"]
