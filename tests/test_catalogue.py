"""A catalogue job end to end: templates, names and metadata; problems caught before spending."""

from __future__ import annotations

import json
from pathlib import Path

import openpyxl
import pyarrow.parquet as pq
import pytest

from pipeline.core.errors import UsageError
from pipeline.emulator import EmulatorConfig, EmulatorTransport, Payload, create_app
from pipeline.run.scheduler import run_manifest
from tests.commandline import nanobatch as cli
from tests.helpers import make_image, run_config, write_csv

ROWS = [
    {"sku": "SKU-1", "variant": "red", "title": "canvas sneaker", "photo": "ref.png"},
    {"sku": "SKU-1", "variant": "navy", "title": "canvas sneaker", "photo": "ref.png"},
    {"sku": "SKU-2", "variant": "red", "title": "ceramic mug", "photo": ""},
]


async def test_templates_name_the_files_and_columns_reach_the_ledger(tmp_path: Path) -> None:
    make_image(tmp_path / "ref.png", (60, 80))
    rows = [{"id": f"{r['sku']}-{r['variant']}", **r, "images": r["photo"]} for r in ROWS]
    manifest = write_csv(tmp_path / "m.csv", rows)
    app = create_app(EmulatorConfig(payload=Payload.COMPACT))
    config = run_config(
        manifest,
        tmp_path / "out",
        prompt_template="Studio photo of a {title} in {variant}, white background",
        name_template="{sku}_{variant}",
    )

    await run_manifest(config, EmulatorTransport(app))

    ledger = {
        r["row_id"]: r for r in pq.read_table(tmp_path / "out" / "ledger.parquet").to_pylist()
    }
    assert ledger["SKU-1-red"]["output_paths"] == ["images/SKU-1_red.png"]
    assert (tmp_path / "out" / "images" / "SKU-2_red.png").exists()
    assert ledger["SKU-2-red"]["prompt"] == "Studio photo of a ceramic mug in red, white background"
    assert json.loads(ledger["SKU-1-navy"]["metadata"])["sku"] == "SKU-1"
    # The edited row follows its 3:4 reference photo when no ratio is given.
    assert ledger["SKU-1-red"]["width"] < ledger["SKU-1-red"]["height"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"prompt_template": "Photo of {title} in {finish}"}, "no 'finish' column"),
        ({"prompt_template": "Photo of {title"}, "not valid"),
        ({"prompt_template": "{title}", "name_template": "{sku}"}, "output names are shared"),
    ],
    ids=["missing-template-column", "broken-template", "name-collision"],
)
async def test_template_and_name_problems_stop_the_run_before_any_request(
    tmp_path: Path, overrides: dict[str, str], message: str
) -> None:
    rows = [{"id": f"{r['sku']}-{r['variant']}", **r} for r in ROWS]
    manifest = write_csv(tmp_path / "m.csv", rows)
    app = create_app(EmulatorConfig(payload=Payload.COMPACT))
    with pytest.raises(UsageError, match=message):
        await run_manifest(run_config(manifest, tmp_path / "out", **overrides),
                           EmulatorTransport(app))  # fmt: skip
    assert app.stats_snapshot()["requests"] == 0


# The example catalogue as a team has it: Sku, Title, Prompt, Images (two photos each),
# Aspect Ratio, their own Size and Price; as CSV, as European Excel's semicolon CSV, as xlsx.
EXAMPLES = Path(__file__).resolve().parent.parent / "manifests"
CATALOGUES = ["catalogue.csv", "catalogue-semicolon.csv", "catalogue.xlsx"]
SKUS = {"00101", "00102", "00201", "00202", "00301", "00401"}
INPUT_IMAGE_TOKENS = 560  # the emulator's count per source image for the default model


@pytest.mark.parametrize("name", CATALOGUES)
def test_the_example_catalogue_validates_and_runs_without_an_edit(
    tmp_path: Path, name: str
) -> None:
    manifest = EXAMPLES / name
    checked = cli("validate", str(manifest), "--format", "json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    report = json.loads(checked.stdout)
    assert (report["rows"], report["valid"], report["problems"]) == (6, 6, [])

    out = tmp_path / "out"
    ran = cli("run", str(manifest), "--out", str(out), "--emulate")
    assert ran.returncode == 0, ran.stderr

    rows = pq.read_table(out / "ledger.parquet").to_pylist()
    assert {r["row_id"] for r in rows} == SKUS  # the Sku column, leading zeros kept
    assert {r["status"] for r in rows} == {"succeeded"}
    for row in rows:
        # Two source photos went with every request (the emulator counts their tokens).
        assert row["prompt_tokens"] // INPUT_IMAGE_TOKENS == 2, row
        assert json.loads(row["metadata"])["Size"]  # the catalogue's Size stayed metadata
    ratios = {r["row_id"]: r["aspect_ratio"] for r in rows}
    assert (ratios["00101"], ratios["00202"]) == ("4:5", "16:9")


def test_sheet_option_reads_that_sheet_for_the_run_and_its_counts(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    first = book.active
    assert first is not None
    first.append(["id", "prompt"])
    first.append(["m0", "a mug"])
    extra = book.create_sheet("Extra")
    extra.append(["Key", "Prompt"])
    for i in range(5):
        extra.append([f"e{i}", f"a lamp {i}"])
    book.save(tmp_path / "m.xlsx")
    out = tmp_path / "out"

    ran = cli("run", str(tmp_path / "m.xlsx"), "--out", str(out), "--emulate",
              "--sheet", "Extra", "--limit", "2")  # fmt: skip

    assert ran.returncode == 0, ran.stderr
    assert set(pq.read_table(out / "ledger.parquet")["row_id"].to_pylist()) == {"e0", "e1"}
    assert "3 rows of the manifest remain" in ran.stderr  # counted on the same sheet


async def test_another_sheet_of_the_same_workbook_is_not_trusted_as_done(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    first = book.active
    assert first is not None
    second = book.create_sheet("Reds")
    for sheet, colour in ((first, "blue"), (second, "red")):
        sheet.append(["id", "prompt"])
        sheet.append(["mug", f"a {colour} mug"])
        sheet.append(["lamp", f"a {colour} lamp"])
    book.save(tmp_path / "m.xlsx")
    out = tmp_path / "out"
    app = create_app(EmulatorConfig(payload=Payload.COMPACT))
    await run_manifest(run_config(tmp_path / "m.xlsx", out), EmulatorTransport(app))
    app.reset_stats()

    # Same file, same ids, other prompts: each row's fingerprint is checked, both are remade.
    await run_manifest(run_config(tmp_path / "m.xlsx", out, sheet="Reds"), EmulatorTransport(app))

    assert app.stats_snapshot()["requests"] == 2
    prompts = pq.read_table(out / "ledger.parquet")["prompt"].to_pylist()
    assert sorted(prompts) == ["a red lamp", "a red mug"]
