"""The journal and the Parquet ledger: durable appends, torn tails dropped, one row per id."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import OutDirLocked
from pipeline.journal import decode_line, encode_line, read_journal
from pipeline.ledger import JOURNAL_FILE, LEDGER_FILE, SCHEMA, Ledger, LedgerRecord


def record(row_id: str, status: str = "succeeded", **kw: object) -> LedgerRecord:
    return LedgerRecord(row_id=row_id, line=1, status=status, reason="STOP", model="m",
                        prompt="p", **kw)  # type: ignore[arg-type]  # fmt: skip


def test_records_survive_a_crash_before_compaction(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    ledger.open()
    ledger.append([record("a"), record("b", "failed")])
    # Simulate a crash: the process dies without close(); the journal is all there is.
    os.close(ledger._lock_fd)  # type: ignore[arg-type]
    ledger._lock_fd = None

    recovered = Ledger(tmp_path)
    recovered.open()
    table = recovered.read()
    recovered.close()
    assert table is not None
    assert sorted(table["row_id"].to_pylist()) == ["a", "b"]
    assert not (tmp_path / JOURNAL_FILE).exists()


def test_the_latest_record_of_a_row_wins(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    ledger.open()
    ledger.append([record("a", "failed")])
    ledger.close()
    ledger = Ledger(tmp_path)
    ledger.open()
    ledger.append([record("a", "succeeded")])
    ledger.close()
    rows = pq.read_table(tmp_path / LEDGER_FILE).to_pylist()
    assert [(r["row_id"], r["status"]) for r in rows] == [("a", "succeeded")]


def test_the_ledger_carries_its_schema_version(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    ledger.open()
    ledger.append([record("a")])
    ledger.close()
    schema = pq.read_schema(tmp_path / LEDGER_FILE)
    assert schema.metadata[b"nanobatch.ledger_version"] == b"1"
    assert schema.names == SCHEMA.names


def test_a_second_writer_is_refused_while_the_first_holds_the_directory(tmp_path: Path) -> None:
    first = Ledger(tmp_path)
    first.open()
    with pytest.raises(OutDirLocked, match="in use"):
        Ledger(tmp_path).open()
    first.close()
    second = Ledger(tmp_path)
    second.open()  # released by close (and by death: flock goes with the process)
    second.close()


def test_leftover_temp_files_are_removed_on_open(tmp_path: Path) -> None:
    (tmp_path / ".tmp").mkdir()
    (tmp_path / ".tmp" / "123-0").write_bytes(b"half")
    (tmp_path / ".tmp-123-ledger.parquet").write_bytes(b"half")
    ledger = Ledger(tmp_path)
    ledger.open()
    ledger.close()
    assert list((tmp_path / ".tmp").iterdir()) == []
    assert not list(tmp_path.glob(".tmp-*"))


def test_an_image_whose_name_looks_like_a_temp_file_is_kept(tmp_path: Path) -> None:
    # A row with the id ".tmp-x": its paid image must survive the next start's clean-up.
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / ".tmp-123-x.png").write_bytes(b"paid")
    ledger = Ledger(tmp_path)
    ledger.open()
    ledger.close()
    assert (tmp_path / "images" / ".tmp-123-x.png").read_bytes() == b"paid"


@settings(max_examples=200, deadline=None)
@given(
    ids=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=8),
    cut=st.integers(min_value=0, max_value=10_000),
    flip=st.one_of(st.none(), st.integers(min_value=0, max_value=10_000)),
)
def test_journal_recovery_keeps_exactly_the_intact_prefix(
    ids: list[str], cut: int, flip: int | None
) -> None:
    lines = [encode_line(asdict(record(i, text="é\n" + i))) for i in ids]
    data = bytearray(b"".join(lines))
    if flip is not None and data:
        data[flip % len(data)] ^= 0x41
    data = data[: len(data) - cut % (len(data) + 1)]
    intact = 0
    offset = 0
    for line in lines:
        end = offset + len(line)
        if end > len(data) or bytes(data[offset:end]) != line:
            break
        intact += 1
        offset = end
    records = [decode_line(line) for line in bytes(data).splitlines(keepends=True)]
    prefix = []
    for r in records:
        if r is None:
            break
        prefix.append(r["row_id"])
    assert prefix == ids[:intact]


def test_read_journal_stops_at_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_FILE
    whole = encode_line(asdict(record("a"))) + encode_line(asdict(record("b")))
    path.write_bytes(whole + encode_line(asdict(record("c")))[:-7])
    records, good = read_journal(path)
    assert [r["row_id"] for r in records] == ["a", "b"]
    assert good == len(whole)


def test_a_damaged_journal_record_is_reported_and_the_records_after_it_are_kept(
    tmp_path: Path,
) -> None:
    ledger = Ledger(tmp_path)
    ledger.open()
    ledger.append([record("a")])
    ledger.append([record("b")])
    ledger.append([record("c")])
    os.close(ledger._lock_fd)  # type: ignore[arg-type]  # killed: the journal is all there is
    journal = tmp_path / JOURNAL_FILE
    data = bytearray(journal.read_bytes())
    data[data.index(b'"row_id":"b"') + 20] ^= 0x01  # one flipped bit in b's record
    journal.write_bytes(bytes(data))

    recovered = Ledger(tmp_path)
    recovered.open()
    recovered.close()

    rows = pq.read_table(tmp_path / LEDGER_FILE).to_pylist()
    assert sorted(r["row_id"] for r in rows) == ["a", "c"]
    assert [d.row_ids for d in recovered.damaged] == [["b"]]
    kept = (tmp_path / (JOURNAL_FILE + ".damaged")).read_bytes()
    assert b'"row_id":"b"' in kept  # the lost record's bytes, kept for a person to look at
