"""Manifests as spreadsheets save them: separators, encodings, broken quotes, big cells,
duplicate headers, empty rows, and .xlsx workbooks; every problem names its row."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest

from pipeline.core.errors import UsageError
from pipeline.plan.manifest import inspect, read_batches
from pipeline.plan.manifest_csv import BLOCK_SIZE


def rows(path: Path, sheet: str | None = None) -> list[dict[str, object]]:
    return [r for b in read_batches(path, 100, sheet=sheet) for r in b.table.to_pylist()]


@pytest.mark.parametrize(
    ("name", "text", "separator"),
    [
        ("m.csv", "id;prompt;Aspect Ratio\r\na;hello, world;1:1\r\n", "semicolon"),
        ("m.csv", "id\tprompt\tAspect Ratio\na\thello, world\t1:1\n", "tab"),
        ("m.tsv", "id\tprompt\tAspect Ratio\na\thello, world\t1:1\n", None),
    ],
    ids=["semicolon-csv", "tab-csv", "tsv"],
)
def test_the_separator_is_found_from_the_header(
    tmp_path: Path, name: str, text: str, separator: str | None
) -> None:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8-sig"))
    assert rows(path) == [{"id": "a", "prompt": "hello, world", "aspect_ratio": "1:1"}]
    notes = " ".join(inspect(path).notes)
    assert (f"{separator}-separated" in notes) if separator else "separated" not in notes


def test_excel_unicode_text_utf16_is_read(tmp_path: Path) -> None:
    path = tmp_path / "m.txt"
    path.write_bytes("id\tprompt\r\na\tcafé crème\r\n".encode("utf-16"))
    assert rows(path) == [{"id": "a", "prompt": "café crème"}]


@pytest.mark.parametrize("filler", [0, 30_000], ids=["early", "past-the-first-block"])
def test_windows_cp1252_csv_names_the_row_and_how_to_save_as_utf8(
    tmp_path: Path, filler: int
) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(b"id,prompt\n" + b"a,ok\n" * filler + "b,café\n".encode("cp1252"))
    with pytest.raises(UsageError, match=rf"row {filler + 2} .*0xe9.*CSV UTF-8") as e:
        rows(path)
    assert "Traceback" not in str(e.value)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        pytest.param('id,prompt\na,"hello\nb,world\nc,x\n', r"row 2 .*quote", id="to-the-end"),
        pytest.param(
            'id,prompt\na,"hello\nb,world\nc,"x"\nd,y\n', r"row 2 .*quote", id="to-the-next-quote"
        ),
        pytest.param(
            "id,prompt,Title,Title\na,p,x,y\n",
            r"columns 3 and 4 .*both named 'Title'",
            id="duplicate-header-names-not-a-key-error",
        ),
        pytest.param("id,prompt\na,x\nb,y,z\n", r"row 3 .*has 3 values", id="too-many-values"),
    ],
)
def test_an_unclosed_quote_or_a_bad_header_or_row_is_reported_with_where_it_is(
    tmp_path: Path, text: str, says: str
) -> None:
    path = tmp_path / "m.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UsageError, match=says):
        rows(path)


def test_a_quoted_value_over_several_lines_is_still_fine(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text('id,prompt\na,"line one,\nline two, ""quoted"""\nb,x\n', encoding="utf-8")
    assert [r["prompt"] for r in rows(path)] == ['line one,\nline two, "quoted"', "x"]


def test_a_cell_over_the_block_size_is_reported_with_its_row(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text(f"id,prompt\na,x\nb,{'y' * (2 * BLOCK_SIZE)}\nc,z\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"row 3 .*'prompt'") as e:
        rows(path)
    assert "straddl" not in str(e.value)


def test_empty_rows_are_left_out_and_row_numbers_stay_the_spreadsheets(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("id,prompt\na,x\n,\nb,y\n , \n", encoding="utf-8")
    (batch,) = read_batches(path, 100)
    assert batch.ids.to_pylist() == ["a", "b"]
    assert [batch.line(0), batch.line(1)] == [1, 3]  # data rows: spreadsheet rows 2 and 4


def workbook(path: Path, formula: bool = False) -> Path:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Catalogue"
    sheet.append(["Sku", "Prompt", "Price", "Images"])
    sheet.append([123, "a mug", 9.5, "a.png; b.png"])
    sheet["A2"].number_format = "00000"
    sheet.append([None, None, None, None])  # formatted but empty
    sheet.append(["B-7", '="photo of "&A2' if formula else "a lamp", 12, None])
    other = book.create_sheet("Sizes")
    other.append(["id", "prompt"])
    other.append(["s1", "from the second sheet"])
    book.save(path)
    return path


def test_xlsx_first_sheet_is_read_as_text_with_spreadsheet_rows(tmp_path: Path) -> None:
    path = workbook(tmp_path / "m.xlsx")
    (batch,) = read_batches(path, 100)
    assert batch.ids.to_pylist() == ["00123", "B-7"]
    assert batch.table.to_pylist() == [
        {"Sku": "00123", "prompt": "a mug", "Price": "9.5", "images": "a.png; b.png"},
        {"Sku": "B-7", "prompt": "a lamp", "Price": "12", "images": ""},
    ]
    assert [batch.line(0), batch.line(1)] == [1, 3]
    assert "first sheet 'Catalogue'" in " ".join(inspect(path).notes)


def test_xlsx_sheet_option_and_a_missing_sheet(tmp_path: Path) -> None:
    path = workbook(tmp_path / "m.xlsx")
    assert rows(path, sheet="Sizes") == [{"id": "s1", "prompt": "from the second sheet"}]
    with pytest.raises(UsageError, match=r"no sheet 'Nope' .*Catalogue, Sizes"):
        rows(path, sheet="Nope")


def test_xlsx_formula_without_a_saved_value_is_reported_not_read_as_empty(
    tmp_path: Path,
) -> None:
    path = workbook(tmp_path / "m.xlsx", formula=True)  # openpyxl saves no computed values
    with pytest.raises(UsageError, match=r"row 4, column 'Prompt' \(cell B4\) is a formula"):
        rows(path)


def test_a_file_that_is_not_a_workbook_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "m.xlsx"
    path.write_text("id,prompt\n")
    with pytest.raises(UsageError, match=r"cannot be read as an .xlsx workbook"):
        rows(path)
