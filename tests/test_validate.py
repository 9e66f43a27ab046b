"""nanobatch validate: every row checked without the network; cost and upload before spending."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.commands.preview import preview
from pipeline.commands.validate import validate
from pipeline.core.clock import VirtualClock
from pipeline.core.config import RunConfig
from pipeline.core.errors import UsageError
from pipeline.core.prices import PriceTable
from pipeline.emulator import EmulatorConfig, EmulatorTransport, Payload, create_app
from pipeline.run.scheduler import run_manifest
from tests.commandline import nanobatch
from tests.helpers import make_image, run_config, write_csv


def test_cost_estimate_is_the_price_table_times_the_row_counts(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [{"id": f"a{i}", "prompt": "p"} for i in range(7)]
    rows += [{"id": f"b{i}", "prompt": "p", "image_size": "4K"} for i in range(3)]
    rows += [{"id": f"c{i}", "prompt": "p", "model": "nano-banana-pro", "image_size": "2K"}
             for i in range(2)]  # fmt: skip
    rows += [{"id": "bad", "prompt": "p", "image_size": "1k"}]
    config = RunConfig(manifest=write_csv(tmp_path / "m.csv", rows), out_dir=tmp_path)
    prices = PriceTable()
    found = validate(config, prices)
    assert (found.rows, found.valid, found.invalid_count) == (13, 12, 1)
    flash = "gemini-3.1-flash-image-preview"
    assert found.images_by_model_size == {
        (flash, "1K"): 7,
        (flash, "4K"): 3,
        ("gemini-3-pro-image-preview", "2K"): 2,
    }
    assert found.standard_usd == pytest.approx(7 * 0.067 + 3 * 0.151 + 2 * 0.134)
    assert found.batch_usd == pytest.approx(found.standard_usd / 2)


def test_a_price_file_overrides_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"images": {"gemini-3.1-flash-image-preview": {"1K": 0.5}},
                                "refusal_usd": 0.01}))  # fmt: skip
    table = PriceTable.load(path)
    assert table.per_image("nano-banana-2", "1K") == 0.5
    assert table.per_image("gemini-3.1-flash-image", "2K") == 0.101  # the rest stays
    assert table.refusal_usd == 0.01
    path.write_text("[1, 2]")
    with pytest.raises(UsageError, match="--prices"):
        PriceTable.load(path)


def test_validate_lists_invalid_rows_and_exits_2(tmp_path: Path) -> None:
    make_image(tmp_path / "ok.png")
    manifest = write_csv(tmp_path / "m.csv", [
        {"id": "good", "prompt": "p", "images": "ok.png"},
        {"id": "gone", "prompt": "p", "images": "missing.png"},
        {"id": "ratio", "prompt": "p", "aspect_ratio": "5:3"},
    ])  # fmt: skip
    text = nanobatch("validate", str(manifest))
    assert text.returncode == 2
    # Row numbers as a spreadsheet shows them: the header is row 1.
    assert "row 3 (gone) images:" in text.stdout
    assert "row 4 (ratio) aspect_ratio:" in text.stdout
    machine = nanobatch("validate", str(manifest), "--format", "json")
    report = json.loads(machine.stdout)
    assert (report["valid"], report["invalid"]) == (1, 2)
    assert {r["row_id"] for r in report["invalid_rows"]} == {"gone", "ratio"}
    assert report["example_request"]["row_id"] == "good"
    assert report["upload_bytes"] > (tmp_path / "ok.png").stat().st_size
    assert (
        nanobatch("validate", str(write_csv(tmp_path / "ok.csv", [{"prompt": "x"}]))).returncode
        == 0
    )


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"id,text\n1,x\n", "no 'prompt' column"),
        (b"", "empty"),
        (b"id,prompt\n1,caf\xe9\n", "UTF-8"),
        (b"id,prompt\n", "no rows"),
        (b"id,prompt\na,x\na,y\n", "duplicate ids"),
    ],
    ids=["no-prompt", "empty-file", "not-utf8", "header-only", "duplicate-ids"],
)
def test_bad_manifest_files_get_one_line_and_exit_2(
    tmp_path: Path, content: bytes, words: str
) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(content)
    result = nanobatch("validate", str(path))
    assert result.returncode == 2
    assert words in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_parquet_column_of_the_wrong_type_and_a_directory_are_usage_errors(
    tmp_path: Path,
) -> None:
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"prompt": ["a"], "images": [3]}), path)
    result = nanobatch("validate", str(path))
    assert (result.returncode, "'images' is int64" in result.stderr) == (2, True)
    result = nanobatch("validate", str(tmp_path))
    assert (result.returncode, "is a directory" in result.stderr) == (2, True)


def test_strict_run_stops_before_any_request_when_a_row_is_invalid(tmp_path: Path) -> None:
    rows = [{"id": "a", "prompt": "p"}, {"id": "b", "prompt": "p", "image_size": "1k"}]
    manifest = write_csv(tmp_path / "m.csv", rows)
    result = nanobatch("run", str(manifest), "--out", str(tmp_path / "o"), "--emulate",
                       "--strict")  # fmt: skip
    assert result.returncode == 2
    assert "--strict: 1 invalid rows, nothing sent" in result.stderr
    assert not (tmp_path / "o" / "ledger.parquet").exists()


def test_duplicate_ids_still_let_every_row_be_checked(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "m.csv", [
        {"prompt": "a mug"},
        {"prompt": "a lamp", "aspect_ratio": "5:3"},
        {"prompt": "a mug"},
    ])  # fmt: skip
    result = nanobatch("validate", str(manifest))
    assert result.returncode == 2
    assert "rows 2 and 4" in result.stderr  # the identical rows, as a spreadsheet numbers them
    assert "row 3 aspect_ratio:" in result.stdout  # the rest of the file was still checked
    assert "row-" not in result.stdout + result.stderr  # never a derived id's hash


def test_validate_out_previews_what_a_rerun_would_send_and_cost(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [
        {"id": "a", "prompt": "a lamp"},
        {"id": "b", "prompt": "a chair"},
        {"id": "c", "prompt": "a stool #500"},
        {"id": "d", "prompt": "a vase", "images": "gone.png"},
    ]
    manifest = write_csv(tmp_path / "m.csv", rows)
    out = tmp_path / "out"
    clock = VirtualClock()  # c backs off four times before it fails: no real waiting
    app_ = create_app(EmulatorConfig(payload=Payload.COMPACT, clock=clock.monotonic))
    config = run_config(manifest, out, clock=clock)
    done = clock.run(run_manifest, config, EmulatorTransport(app_))
    assert dict(done.by_status) == {"succeeded": 2, "failed": 1, "invalid": 1}

    rows[1]["prompt"] = "a red chair"  # an edit: b is made again
    rows.append({"id": "e", "prompt": "a rug"})  # a new row
    write_csv(manifest, rows)
    prices = PriceTable()
    ahead = preview(RunConfig(manifest=manifest, out_dir=out), prices)
    assert ahead.kept == 1  # a
    assert dict(ahead.send) == {"new": 1, "failed before": 1, "inputs changed": 1}
    assert ahead.invalid == 1  # d, still missing its photo
    one = prices.per_image("gemini-3.1-flash-image-preview", "1K")
    assert ahead.cost_usd == pytest.approx(3 * one)

    shown = CliRunner().invoke(app, ["validate", str(manifest), "--out", str(out),
                                     "--format", "json"])  # fmt: skip
    assert json.loads(shown.stdout)["out"]["send"] == 3
    assert pq.read_table(out / "ledger.parquet").num_rows == 4  # a preview writes nothing


def test_an_unknown_model_is_a_warning_with_a_did_you_mean(tmp_path: Path) -> None:
    rows = [{"id": "a", "prompt": "p", "model": "gemini-3.1-flash-image-preveiw"},
            {"id": "b", "prompt": "p", "model": "gemini-3.1-flash-image-preveiw"},
            {"id": "c", "prompt": "p", "model": "brand-new-model"},
            {"id": "d", "prompt": "p"}]  # fmt: skip
    config = RunConfig(manifest=write_csv(tmp_path / "m.csv", rows), out_dir=tmp_path)
    found = validate(config, PriceTable())
    assert (found.valid, found.invalid_count) == (4, 0)  # new models exist: not an error
    assert [(w.row_id, w.field) for w in found.warnings] == [("a", "model"), ("c", "model")]
    assert "did you mean 'gemini-3.1-flash-image-preview'?" in found.warnings[0].message
    assert "did you mean" not in found.warnings[1].message
