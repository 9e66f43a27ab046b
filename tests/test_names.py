"""Output names: checked in bytes before any request, sub-folders from a name template (never
outside images/), temp files that no name can collide with, one bad write fails one row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline.commands.preview import preview
from pipeline.commands.rename import rename
from pipeline.commands.thumbs import make_thumbnail
from pipeline.commands.verify import verify
from pipeline.core.prices import PriceTable
from pipeline.core.types import InvalidRow, Job
from pipeline.emulator import EmulatorTransport
from pipeline.plan.names import name_limit, output_name
from pipeline.plan.planstate import name_change_note
from pipeline.plan.rows import Defaults, RowResolver
from pipeline.run.scheduler import run_manifest
from tests.helpers import emulator, make_image, run_config, write_csv
from tests.test_cli import nanobatch

FLASH = "gemini-3.1-flash-image-preview"
CJK_100 = "商品图片" * 25  # 100 characters, 300 bytes in UTF-8


def ledger(out: Path) -> dict[str, dict[str, Any]]:
    return {r["row_id"]: r for r in pq.read_table(out / "ledger.parquet").to_pylist()}


def test_names_are_checked_in_bytes_not_characters(tmp_path: Path) -> None:
    resolver = RowResolver(tmp_path, Defaults(FLASH, None, None))
    too_long = resolver.resolve(CJK_100, 2, {"prompt": "p"})
    assert isinstance(too_long, InvalidRow)
    assert too_long.field == "id"
    assert "300 bytes" in too_long.reason
    fits = resolver.resolve("商品" * 30, 3, {"prompt": "p"})  # 180 bytes
    assert isinstance(fits, Job)
    # The same limit holds for every folder of a templated name, and follows the disk's limit.
    small_disk = RowResolver(tmp_path, Defaults(FLASH, None, None, name_max_bytes=100))
    named = small_disk.resolve("r1", 4, {"prompt": "p", "output_name": "a/" + "b" * 90})
    assert isinstance(named, InvalidRow)
    assert named.field == "output_name"
    assert name_limit(tmp_path) == 255
    assert name_limit(tmp_path / "not" / "made" / "yet") == 255


async def test_an_id_too_long_for_the_disk_costs_nothing_and_stops_nothing(tmp_path: Path) -> None:
    rows = [{"id": CJK_100, "prompt": "a vase"}] + [
        {"id": f"r{i}", "prompt": f"a lamp {i}"} for i in range(4)
    ]
    manifest = write_csv(tmp_path / "m.csv", rows)
    app = emulator()
    out = tmp_path / "out"

    await run_manifest(run_config(manifest, out), EmulatorTransport(app))

    rows_by_id = ledger(out)
    assert rows_by_id[CJK_100]["status"] == "invalid"
    assert rows_by_id[CJK_100]["reason"] == "INVALID_ID"
    assert all(rows_by_id[f"r{i}"]["status"] == "succeeded" for i in range(4))
    assert app.stats_snapshot()["requests"] == 4  # nothing paid for the row that cannot be kept


async def test_an_image_named_like_a_temp_file_survives_the_next_start(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "m.csv", [{"id": ".tmp-1-x", "prompt": "a vase"}])
    app = emulator()
    out = tmp_path / "out"
    await run_manifest(run_config(manifest, out), EmulatorTransport(app))
    await run_manifest(run_config(manifest, out), EmulatorTransport(app))  # cleans temp files

    assert (out / "images" / ".tmp-1-x.png").exists()
    assert verify(out).problems == []
    assert app.stats_snapshot()["requests"] == 1


async def test_a_write_that_fails_fails_its_row_not_the_run(tmp_path: Path) -> None:
    rows = [{"id": f"r{i}", "prompt": f"a lamp {i}"} for i in range(6)]
    manifest = write_csv(tmp_path / "m.csv", rows)
    out = tmp_path / "out"
    (out / "images" / "r2.png").mkdir(parents=True)  # a folder where r2's image must go
    app = emulator()

    result = await run_manifest(run_config(manifest, out), EmulatorTransport(app))

    rows_by_id = ledger(out)
    assert rows_by_id["r2"]["status"] == "failed"
    assert rows_by_id["r2"]["reason"] == "WRITE_FAILED"
    assert "images/r2" in rows_by_id["r2"]["error"]
    assert rows_by_id["r2"]["cost_usd"] > 0  # received, so billed: the cost stays visible
    assert sum(r["status"] == "succeeded" for r in rows_by_id.values()) == 5
    assert result.halt is None
    assert app.stats_snapshot()["requests"] == 6


def test_a_slash_in_the_name_template_makes_folders_that_stay_inside() -> None:
    row = {"category": "shoes", "sku": "S-1", "evil": "../../etc", "empty": ""}
    assert output_name(row, "{category}/{sku}") == "shoes/S-1"
    assert output_name(row, "{evil}/{sku}") == "etc/S-1"  # a value's own / is no folder
    assert output_name(row, "/{category}/../{sku}") == "shoes/S-1"
    assert output_name(row, "{empty}/{sku}") == "S-1"
    assert output_name({"output_name": "mugs/m-1"}, None) == "mugs/m-1"


async def test_name_template_folders_are_written_verified_and_adopted(tmp_path: Path) -> None:
    rows = [
        {"id": f"r{i}", "prompt": f"item {i}", "category": cat, "sku": f"s{i % 2}"}
        for i, cat in enumerate(["shoes", "shoes", "mugs", "mugs"])
    ]
    manifest = write_csv(tmp_path / "m.csv", rows)
    out = tmp_path / "out"
    app = emulator()
    config = run_config(manifest, out, name_template="{category}/{sku}")

    await run_manifest(config, EmulatorTransport(app))

    rows_by_id = ledger(out)
    assert rows_by_id["r0"]["output_paths"] == ["images/shoes/s0.png"]
    assert rows_by_id["r3"]["output_paths"] == ["images/mugs/s1.png"]
    check = verify(out)
    assert check.problems == []
    assert check.unreferenced == []  # the folders themselves are not stray files

    # After a crash between an image's rename and its record, the image in its folder is
    # adopted, not bought again.
    (out / "ledger.parquet").unlink()
    (out / "ledger.journal").write_bytes(b"")
    await run_manifest(config, EmulatorTransport(app))
    assert {r["reason"] for r in ledger(out).values()} == {"ADOPTED"}
    assert app.stats_snapshot()["requests"] == 4


async def test_a_symlinked_folder_is_not_written_through(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "m.csv", [{"id": "r0", "prompt": "p", "category": "shoes"}])
    out = tmp_path / "out"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "images").mkdir(parents=True)
    (out / "images" / "shoes").symlink_to(elsewhere)

    config = run_config(manifest, out, name_template="{category}/{id}")
    await run_manifest(config, EmulatorTransport(emulator()))

    assert list(elsewhere.iterdir()) == []
    assert ledger(out)["r0"]["reason"] == "WRITE_FAILED"


async def test_a_changed_name_template_renames_nothing_until_asked_and_rename_sends_nothing(
    tmp_path: Path,
) -> None:
    rows = [{"id": f"r{i}", "prompt": f"item {i}", "category": "mugs", "sku": f"m{i}"}
            for i in range(3)]  # fmt: skip
    manifest = write_csv(tmp_path / "m.csv", rows)
    out = tmp_path / "out"
    app = emulator()
    await run_manifest(run_config(manifest, out, name_template="{sku}"), EmulatorTransport(app))
    assert name_change_note(run_config(manifest, out, name_template="{sku}"), 3) is None

    changed = run_config(manifest, out, name_template="{category}/{sku}")
    ahead = preview(changed, PriceTable())  # validate --out: says so before any run
    assert ahead.renamed is not None
    assert "3 done rows keep their file names" in ahead.renamed
    note = name_change_note(changed, 3)
    assert note is not None
    assert "nanobatch rename" in note
    assert "--name-template '{category}/{sku}'" in note
    await run_manifest(changed, EmulatorTransport(app))
    assert ledger(out)["r0"]["output_paths"] == ["images/m0.png"]  # kept: nothing renamed

    done = rename(changed)

    assert (done.rows, done.files, done.skipped) == (3, 3, [])
    assert ledger(out)["r0"]["output_paths"] == ["images/mugs/m0.png"]
    assert (out / "images" / "mugs" / "m2.png").exists()
    assert not (out / "images" / "m2.png").exists()
    assert verify(out).problems == []
    assert verify(out).unreferenced == []
    assert name_change_note(changed, 3) is None  # the folder's scheme is the new one now
    assert rename(changed).unchanged == 3
    await run_manifest(changed, EmulatorTransport(app))
    assert app.stats_snapshot()["requests"] == 3


def test_the_cli_warns_of_a_changed_name_template_and_renames(tmp_path: Path) -> None:
    rows = [{"id": f"r{i}", "prompt": f"item {i}", "category": "mugs"} for i in range(2)]
    manifest = str(write_csv(tmp_path / "m.csv", rows))
    out = str(tmp_path / "out")
    first = nanobatch("run", manifest, "--out", out, "--emulate")
    assert first.returncode == 0, first.stderr

    second = nanobatch(
        "run", manifest, "--out", out, "--emulate", "--name-template", "{category}/{id}"
    )
    assert second.returncode == 0, second.stderr
    assert "2 finished rows keep their old file names" in second.stderr
    assert "nanobatch rename" in second.stderr

    renamed = nanobatch("rename", manifest, "--out", out, "--name-template", "{category}/{id}")
    assert renamed.returncode == 0, renamed.stderr
    assert ledger(tmp_path / "out")["r1"]["output_paths"] == ["images/mugs/r1.png"]


def test_an_image_with_the_longest_allowed_name_gets_its_thumbnail(tmp_path: Path) -> None:
    stem = "商" * 81  # 243 bytes: the longest name a row may have
    (tmp_path / "images").mkdir()
    make_image(tmp_path / "images" / f"{stem}.png")
    assert make_thumbnail(tmp_path, f"images/{stem}.png") == f"thumbs/{stem}.jpg"
