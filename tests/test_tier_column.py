"""A manifest's own ``tier`` column: a value that is not a service tier makes its row invalid
with one line naming the row, the field and the fix (nothing sent); a column that means
something else to the user keeps out of the way under another name (any spelling that is not
one of ``tier``'s, or a spelling whose values are not tiers), as metadata usable in templates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.commands.validate import validate
from pipeline.core.clock import VirtualClock
from pipeline.core.config import RunConfig
from pipeline.core.prices import PriceTable
from pipeline.emulator import EmulatorConfig, EmulatorTransport, Payload, create_app
from pipeline.run.scheduler import run_manifest
from tests.helpers import run_config, write_csv

LOYALTY = ["gold", "silver", "flex"]  # a customer's tier; "flex" happens to be a service tier


def manifest(tmp_path: Path, column: str) -> Path:
    rows: list[dict[str, Any]] = [
        {"id": f"sku{i}", "prompt": f"a mug for {tier} members", column: tier}
        for i, tier in enumerate(LOYALTY)
    ]
    return write_csv(tmp_path / "m.csv", rows)


def test_a_value_that_is_no_service_tier_names_the_row_the_field_and_the_fix(
    tmp_path: Path,
) -> None:
    path = manifest(tmp_path, "tier")

    result = CliRunner().invoke(app, ["validate", str(path)])

    assert result.exit_code == 2
    lines = [line for line in result.stdout.splitlines() if "not a service tier" in line]
    assert len(lines) == 2  # gold and silver; flex is one
    gold = next(line for line in lines if "'gold'" in line)
    assert gold.strip().startswith("row 2 (sku0) ")  # the row, as the spreadsheet numbers it
    assert "tier: 'gold' is not a service tier" in gold  # the field and the value
    assert "use standard, flex, priority; or rename the column" in gold  # the fix, both ways


async def test_the_invalid_rows_cost_nothing_and_the_run_records_why(
    tmp_path: Path, clock: VirtualClock
) -> None:
    emulator = create_app(EmulatorConfig(payload=Payload.COMPACT, clock=clock.monotonic))
    out = tmp_path / "out"

    await run_manifest(run_config(manifest(tmp_path, "tier"), out, clock=clock),
                       EmulatorTransport(emulator))  # fmt: skip

    rows = {r["row_id"]: r for r in pq.read_table(out / "ledger.parquet").to_pylist()}
    assert (rows["sku0"]["status"], rows["sku0"]["reason"]) == ("invalid", "INVALID_TIER")
    assert "rename the column" in rows["sku0"]["error"]
    assert (rows["sku2"]["status"], rows["sku2"]["tier"]) == ("succeeded", "flex")
    assert emulator.stats_snapshot()["requests"] == 1


def test_renamed_the_column_is_the_users_own_and_feeds_the_template(tmp_path: Path) -> None:
    config = RunConfig(manifest(tmp_path, "customer_tier"), tmp_path / "out",
                       prompt_template="a mug for {customer_tier} members")  # fmt: skip

    found = validate(config, PriceTable())

    assert (found.valid, found.invalid_count) == (3, 0)
    assert found.tiers == {"standard": 3}  # the row's own column is not the service tier


def test_a_spelling_of_tier_whose_values_are_not_tiers_stays_metadata(tmp_path: Path) -> None:
    rows = [
        {"id": f"sku{i}", "prompt": "a mug", "Tier": t} for i, t in enumerate(["gold", "silver"])
    ]
    config = RunConfig(write_csv(tmp_path / "m.csv", rows), tmp_path / "out")

    found = validate(config, PriceTable())

    assert (found.valid, found.invalid_count) == (2, 0)
    assert found.tiers == {"standard": 2}
    assert any("'Tier'" in note and "kept as metadata" in note for note in found.notes)
