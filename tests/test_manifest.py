"""Manifest reading and row validation: every bad input gets a clear reason, not a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.core.errors import UsageError
from pipeline.core.models import DEFAULT_MODEL
from pipeline.core.types import InvalidRow, Job
from pipeline.plan.idcheck import scan_ids
from pipeline.plan.manifest import read_batches
from pipeline.plan.rowids import derive_v2 as derive_id
from pipeline.plan.rows import Defaults, RowResolver
from tests.helpers import make_image, write_csv, write_parquet

DEFAULTS = Defaults(DEFAULT_MODEL, None, None)


def resolve(tmp_path: Path, row: dict[str, Any], defaults: Defaults = DEFAULTS) -> Job | InvalidRow:
    return RowResolver(tmp_path, defaults).resolve("r1", 1, row)


def test_csv_batches_keep_every_value_as_text(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text('id,prompt,aspect_ratio\n007,"a, b\nc",1:1\n', encoding="utf-8")
    (batch,) = list(read_batches(path, 100))
    assert batch.ids.to_pylist() == ["007"]
    assert batch.table.to_pylist() == [{"id": "007", "prompt": "a, b\nc", "aspect_ratio": "1:1"}]


def test_csv_with_a_byte_order_mark_reads_its_first_column(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes("\ufeffid,prompt\nx,hello\n".encode())
    (batch,) = list(read_batches(path, 100))
    assert batch.ids.to_pylist() == ["x"]


@pytest.mark.parametrize("writer", [write_csv, write_parquet])
def test_limit_cuts_the_manifest_to_its_first_rows(tmp_path: Path, writer: Any) -> None:
    path = writer(tmp_path / "m", [{"id": str(i), "prompt": "p"} for i in range(10)])
    limited = list(
        read_batches(
            path.rename(path.with_suffix(".csv" if writer is write_csv else ".parquet")), 3, limit=5
        )
    )
    assert [i for b in limited for i in b.ids.to_pylist()] == ["0", "1", "2", "3", "4"]


def test_parquet_is_read_in_batches_with_line_numbers(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "m.parquet", [{"id": str(i), "prompt": "p"} for i in range(10)])
    assert [b.first_line for b in read_batches(path, 3)] == [1, 4, 7, 10]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"id,text\n1,x\n", "no 'prompt' column"),
        (b"", "empty"),
        (b"id,prompt\n1,caf\xe9\n", "UTF-8"),
    ],
    ids=["no-prompt-column", "empty-file", "not-utf8"],
)
def test_bad_csv_files_raise_a_usage_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=message):
        list(read_batches(path, 100))


def test_a_directory_or_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="directory"):
        list(read_batches(tmp_path, 10))
    with pytest.raises(UsageError, match="does not exist"):
        list(read_batches(tmp_path / "nope.csv", 10))


def test_parquet_with_a_non_text_prompt_column_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"prompt": [1, 2]}), path)
    with pytest.raises(UsageError, match="'prompt' is int64"):
        list(read_batches(path, 10))


def test_a_manifest_with_no_rows_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("id,prompt\n")
    with pytest.raises(UsageError, match="no rows"):
        list(read_batches(path, 10))


def test_derived_ids_are_stable_and_content_based() -> None:
    row = {"prompt": "a", "images": None}
    assert derive_id(row) == derive_id(dict(row))
    assert derive_id(row) != derive_id({"prompt": "b"})
    assert derive_id(row).startswith("row-")


def test_duplicate_and_unsafe_ids_are_reported_before_anything_runs(tmp_path: Path) -> None:
    rows = [{"id": i, "prompt": "p"} for i in ["a", "b", "a", "../etc", "x/y", "ok"]]
    problems = scan_ids(write_csv(tmp_path / "m.csv", rows), 2)[0]
    text = " ".join(problems)
    assert "'../etc'" in text
    assert "'x/y'" in text
    assert "duplicate" in text
    assert "'a' in rows 2 and 4" in text  # spreadsheet rows: the header is row 1
    assert scan_ids(write_csv(tmp_path / "ok.csv", rows[:2]), 2)[0] == []


def test_rows_without_id_column_get_derived_ids_and_identical_rows_clash(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "m.csv", [{"prompt": "same"}, {"prompt": "same"}, {"prompt": "x"}])
    assert any("duplicate" in p for p in scan_ids(path, 10)[0])


def test_a_valid_row_resolves_against_defaults(tmp_path: Path) -> None:
    make_image(tmp_path / "a.png")
    job = resolve(tmp_path, {"prompt": "p", "images": "a.png; a.png", "aspect_ratio": "16:9"})
    assert isinstance(job, Job)
    assert job.images == (str(tmp_path / "a.png"), str(tmp_path / "a.png"))
    assert job.model == DEFAULT_MODEL
    assert job.aspect_ratio == "16:9"
    assert job.image_size is None


def test_model_aliases_resolve(tmp_path: Path) -> None:
    job = resolve(tmp_path, {"prompt": "p", "model": "nano-banana-pro"})
    assert isinstance(job, Job)
    assert job.model == "gemini-3-pro-image-preview"
    ga = resolve(tmp_path, {"prompt": "p", "model": "gemini-3-pro-image"})
    assert isinstance(ga, Job)
    assert ga.model == "gemini-3-pro-image"


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        ({"prompt": ""}, "prompt", "empty"),
        ({"prompt": "p", "image_size": "1k"}, "image_size", "'1K'"),
        ({"prompt": "p", "image_size": "512", "model": "nano-banana-pro"}, "image_size", "512"),
        ({"prompt": "p", "image_size": "1K", "model": "nano-banana"}, "image_size", "no"),
        ({"prompt": "p", "aspect_ratio": "5:3"}, "aspect_ratio", "5:3"),
        ({"prompt": "p", "aspect_ratio": "8:1", "model": "nano-banana"}, "aspect_ratio", "8:1"),
        ({"prompt": "p", "images": "missing.png"}, "images", "does not exist"),
        ({"prompt": "p", "images": "anim.gif"}, "images", "GIF"),
        ({"prompt": "p", "images": "notes.txt"}, "images", "not a PNG"),
        ({"prompt": "p", "images": "big.png"}, "images", "7 MiB"),
        ({"prompt": "p", "images": "sub"}, "images", "directory"),
        ({"prompt": "p", "images": ";".join(["a.png"] * 15)}, "images", "at most 14"),
        ({"prompt": "p", "images": [1, 2]}, "images", "list of paths"),
    ],
    ids=[
        "empty-prompt", "lowercase-size", "512-on-pro", "size-on-2.5", "bad-ratio",
        "ratio-of-other-model", "missing-file", "gif", "not-an-image", "too-big", "directory",
        "15-images", "wrong-type",
    ],
)  # fmt: skip
def test_bad_rows_are_invalid_with_field_and_reason(
    tmp_path: Path, row: dict[str, Any], field: str, words: str
) -> None:
    make_image(tmp_path / "a.png")
    (tmp_path / "anim.gif").write_bytes(b"GIF89a" + b"\0" * 30)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "big.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * (8 * 1024 * 1024))
    (tmp_path / "sub").mkdir()
    result = resolve(tmp_path, row)
    assert isinstance(result, InvalidRow)
    assert result.field == field
    assert words in result.reason


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_source_images_are_typed_by_content_not_name(tmp_path: Path, fmt: str) -> None:
    make_image(tmp_path / "photo.dat", fmt=fmt)
    assert isinstance(resolve(tmp_path, {"prompt": "p", "images": "photo.dat"}), Job)
