"""Row ids: the id column (--id-column, or one named id/sku/key), text ids, format-independent
derived ids, and the scheme an output folder keeps so a resume never pays twice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.commands.run import remaining_usd
from pipeline.core.errors import UsageError
from pipeline.core.types import Status
from pipeline.emulator import EmulatorApp, EmulatorConfig, EmulatorTransport, Payload, create_app
from pipeline.plan.idcheck import scan_ids
from pipeline.plan.manifest import read_batches
from pipeline.plan.rowids import ID_FILE, derive_v1
from pipeline.run.scheduler import run_manifest
from pipeline.store.ledger import Ledger, LedgerRecord
from tests.helpers import make_image, run_config, write_csv, write_parquet


def ids(path: Path, **kw: Any) -> list[str]:
    return [i for b in read_batches(path, 100, **kw) for i in b.ids.to_pylist()]


def requests(app: EmulatorApp) -> int:
    value = app.stats_snapshot()["requests"]
    assert isinstance(value, int)
    return value


async def run(app: EmulatorApp, manifest: Path, out: Path, **kw: Any) -> None:
    await run_manifest(run_config(manifest, out, **kw), EmulatorTransport(app))


def ledger_ids(out: Path) -> set[str]:
    return set(pq.read_table(out / "ledger.parquet")["row_id"].to_pylist())


@pytest.mark.parametrize("header", ["Sku", "SKU", "key", "ID"])
def test_a_column_named_sku_key_or_id_in_any_case_is_the_id(tmp_path: Path, header: str) -> None:
    # Same prompt, rows differ only in their SKU: derived ids clashed as duplicates.
    rows = [{header: s, "prompt": "studio photo"} for s in ("00123", "A-7", "b9")]
    path = write_csv(tmp_path / "m.csv", rows)
    assert ids(path) == ["00123", "A-7", "b9"]
    assert scan_ids(path, 100)[0] == []


def test_id_column_option_chooses_the_column_and_an_unknown_one_is_a_usage_error(
    tmp_path: Path,
) -> None:
    rows = [
        {"sku": "s1", "handle": "h1", "prompt": "p"},
        {"sku": "s1", "handle": "h2", "prompt": "p"},
    ]
    path = write_csv(tmp_path / "m.csv", rows)
    assert ids(path, id_column="handle") == ["h1", "h2"]
    with pytest.raises(UsageError, match=r"--id-column 'nope'.*columns: sku, handle, prompt"):
        ids(path, id_column="nope")


def test_numeric_ids_are_read_as_text(tmp_path: Path) -> None:
    pq.write_table(pa.table({"sku": [123, 7], "prompt": ["a", "b"]}), tmp_path / "i.parquet")
    pq.write_table(pa.table({"id": [123.0, 7.0], "prompt": ["a", "b"]}), tmp_path / "f.parquet")
    assert ids(tmp_path / "i.parquet") == ["123", "7"]
    assert ids(tmp_path / "f.parquet") == ["123", "7"]
    csv = tmp_path / "m.csv"
    csv.write_text("SKU,prompt\n00123,a\n0.50,b\n", encoding="utf-8")
    assert ids(csv) == ["00123", "0.50"]


def test_derived_ids_do_not_depend_on_the_file_format(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [
        {"prompt": "a mug", "images": ["a.png", "b.png"], "colour": "red", "price": 12},
        {"prompt": "a mug", "images": ["a.png"], "colour": "navy", "price": None},
    ]
    parquet = write_parquet(tmp_path / "m.parquet", rows)
    csv = tmp_path / "m.csv"
    csv.write_text('prompt,images,colour,price\na mug,"a.png; b.png",red,12\na mug,a.png,navy,\n')
    assert ids(csv) == ids(parquet)


def test_rows_that_differ_only_in_a_metadata_column_get_their_own_derived_ids(
    tmp_path: Path,
) -> None:
    rows = [{"prompt": "a mug", "colour": c} for c in ("red", "navy")]
    path = write_csv(tmp_path / "m.csv", rows)
    assert scan_ids(path, 100)[0] == []
    assert len(set(ids(path))) == 2


def test_identical_rows_are_named_by_spreadsheet_row_not_by_hash(tmp_path: Path) -> None:
    rows = [{"prompt": "x"}, {"prompt": "same"}, {"prompt": "y"}, {"prompt": "same"}]
    text = " ".join(scan_ids(write_csv(tmp_path / "m.csv", rows), 2)[0])
    assert "rows 3 and 5" in text  # header = row 1
    assert "row-" not in text


def test_every_duplicate_and_every_bad_id_is_listed_in_one_pass(tmp_path: Path) -> None:
    rows = [{"sku": s, "prompt": "p"} for s in ("a", "b", "a", "b", "c/d", "e")]
    text = " ".join(scan_ids(write_csv(tmp_path / "m.csv", rows), 2)[0])
    assert "'a' in rows 2 and 4" in text
    assert "'b' in rows 3 and 5" in text
    assert "row 6: id 'c/d'" in text


async def test_an_output_folder_keeps_its_id_scheme(tmp_path: Path) -> None:
    rows = [{"sku": f"s{i}", "handle": f"h{i}", "prompt": f"mug {i}"} for i in range(3)]
    manifest = write_csv(tmp_path / "m.csv", rows)
    out = tmp_path / "out"
    app = create_app(EmulatorConfig(payload=Payload.COMPACT))
    await run(app, manifest, out, id_column="handle")
    assert ledger_ids(out) == {"h0", "h1", "h2"}
    assert json.loads((out / ID_FILE).read_text())["column"] == "handle"
    sent = requests(app)

    # Without the option the folder's scheme is kept (auto-detection would pick 'sku').
    await run(app, manifest, out)
    # An explicit other scheme stops before anything is sent, saying what it would re-send.
    with pytest.raises(UsageError, match=r"3 rows of its ledger.*sent \(and paid for\) again"):
        await run(app, manifest, out, id_column="sku")
    assert requests(app) == sent
    assert ledger_ids(out) == {"h0", "h1", "h2"}
    # What a rerun would still cost is counted with the folder's ids too: nothing.
    assert remaining_usd(run_config(manifest, out)) == 0


async def test_a_folder_from_before_the_record_keeps_its_derived_ids(tmp_path: Path) -> None:
    rows = [{"prompt": f"mug {i}", "sku": f"s{i}"} for i in range(2)]
    manifest = write_csv(tmp_path / "m.csv", rows)
    out = tmp_path / "out"
    ledger = Ledger(out)
    ledger.open()
    old = [derive_v1({k: str(v) for k, v in r.items()}) for r in rows]
    ledger.append([LedgerRecord(i, n + 1, Status.SUCCEEDED.value, "OK", "m", "p")
                   for n, i in enumerate(old)])  # fmt: skip
    ledger.close()
    app = create_app(EmulatorConfig(payload=Payload.COMPACT))

    await run(app, manifest, out)

    assert requests(app) == 0
    assert json.loads((out / ID_FILE).read_text())["derived"] == "v1"


async def test_a_resume_from_the_same_data_in_another_format_sends_nothing(tmp_path: Path) -> None:
    make_image(tmp_path / "a.png")
    make_image(tmp_path / "b.png")
    rows: list[dict[str, Any]] = [
        {"prompt": "a mug", "images": ["a.png", "b.png"], "colour": "red"},
        {"prompt": "a mug", "images": ["a.png"], "colour": "navy"},
    ]
    csv = write_csv(tmp_path / "m.csv", rows)  # images written as "a.png;b.png"
    parquet = write_parquet(tmp_path / "m.parquet", rows)  # images as list<string>
    out = tmp_path / "out"
    app = create_app(EmulatorConfig(payload=Payload.COMPACT))
    await run(app, csv, out)
    assert requests(app) == 2

    await run(app, parquet, out)

    assert requests(app) == 2
    assert len(ledger_ids(out)) == 2
