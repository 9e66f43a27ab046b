"""The read-only ledger view: verify and report see a run that is going or crashed whole."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from pipeline.commands.report import build_report
from pipeline.commands.verify import verify
from pipeline.core.errors import LedgerDamaged
from pipeline.core.types import ImagePart
from pipeline.store.ledger import JOURNAL_FILE, LEDGER_FILE, Ledger, LedgerRecord
from pipeline.store.ledgerview import read_ledger_view
from pipeline.store.storage import store_images


def png(colour: tuple[int, int, int] = (1, 2, 3)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buf, "PNG")
    return buf.getvalue()


def succeeded(out: Path, row_id: str, line: int) -> LedgerRecord:
    """A row's image written as a run writes it, and its record."""
    stored = store_images(out, row_id, (ImagePart(png((line, 0, 0)), "image/png"),))
    return LedgerRecord(row_id=row_id, line=line, status="succeeded", reason="STOP", model="m",
                        prompt=f"p{line}", output_paths=[s.rel_path for s in stored],
                        sha256=[s.sha256 for s in stored], width=16, height=16)  # fmt: skip


def going(out: Path) -> Ledger:
    """A directory whose first run recorded a and b, and whose second run, still going (its
    ledger open, holding the lock), has recorded c and d in its journal only."""
    first = Ledger(out)
    first.open()
    first.append([succeeded(out, "a", 1), succeeded(out, "b", 2)])
    first.close()
    second = Ledger(out)
    second.open()
    failed = LedgerRecord(row_id="d", line=4, status="failed", reason="SERVER_ERROR_503",
                          model="m", prompt="p4")  # fmt: skip
    second.append([succeeded(out, "c", 3)])
    second.append([failed])
    return second


def test_verify_and_report_see_the_rows_of_a_run_still_going(tmp_path: Path) -> None:
    second = going(tmp_path)
    try:
        view = read_ledger_view(tmp_path)
        assert sorted(view.table["row_id"].to_pylist()) == ["a", "b", "c", "d"]
        assert (view.folded_rows, view.journal_records, view.live) == (2, 2, True)

        check = verify(tmp_path)
        assert (check.checked_rows, check.problems, check.unreferenced) == (3, [], [])
        assert check.live

        report = build_report(tmp_path)
        assert (report.rows, report.by_status["succeeded"], report.images) == (4, 3, 3)
        assert report.pending_journal
    finally:
        second.close()
    assert read_ledger_view(tmp_path).live is False  # folded at the end


def test_a_torn_tail_is_left_out_and_a_damaged_record_costs_only_itself(tmp_path: Path) -> None:
    second = going(tmp_path)
    second.close()  # fold a and b... and c, d: start again with a journal of three records
    crashed = Ledger(tmp_path)
    crashed.open()
    crashed.append([succeeded(tmp_path, "e", 5)])
    crashed.append([succeeded(tmp_path, "f", 6)])
    crashed.append([succeeded(tmp_path, "g", 7)])
    journal = tmp_path / JOURNAL_FILE
    data = bytearray(journal.read_bytes())
    first_line = data.index(b"\n")
    data[first_line + 30] ^= 0x01  # one flipped bit in f's record
    journal.write_bytes(bytes(data) + b'0badc0de {"row_id":"h"')  # and a torn last write
    try:
        view = read_ledger_view(tmp_path)
        assert sorted(view.table["row_id"].to_pylist()) == list("abcdeg")
        assert [d.row_ids for d in view.damaged] == [["f"]]
        assert verify(tmp_path).damaged == view.damaged
    finally:
        crashed.close()


def test_a_flipped_byte_in_the_parquet_ledger_is_caught_by_the_view(tmp_path: Path) -> None:
    going(tmp_path).close()
    path = tmp_path / LEDGER_FILE
    data = bytearray(path.read_bytes())
    for offset in (len(data) // 2, len(data) - 40):  # a data page; the footer
        flipped = bytearray(data)
        flipped[offset] ^= 0x10
        path.write_bytes(bytes(flipped))
        with pytest.raises(LedgerDamaged, match="is damaged"):
            read_ledger_view(tmp_path)
        with pytest.raises(LedgerDamaged):
            verify(tmp_path)
