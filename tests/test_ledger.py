"""The journal and the Parquet ledger: durable appends, torn tails dropped, one row per id."""

from __future__ import annotations

import os
import tracemalloc
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.errors import OutDirLocked
from pipeline.store.journal import complete_length, decode_line, encode_line
from pipeline.store.ledger import (
    ATTEMPTS_FILE,
    JOURNAL_FILE,
    LEDGER_FILE,
    SCHEMA,
    AttemptRecord,
    Ledger,
    LedgerRecord,
)
from tests.helpers import journal_records


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
    assert schema.metadata[b"nanobatch.ledger_version"] == b"2"  # 2: provider, tier, tier_reported
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
    assert [r["row_id"] for r in journal_records(path)] == ["a", "b"]
    assert complete_length(path) == len(whole)


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


AT = datetime(2026, 1, 1, tzinfo=UTC)  # whole milliseconds: what the ledger stores


def crash(ledger: Ledger) -> None:
    """The process dies without close(): the journals are all there is."""
    os.close(ledger._lock_fd)  # type: ignore[arg-type]
    ledger._lock_fd = None


def attempt(row_id: str, n: int) -> AttemptRecord:
    return AttemptRecord(row_id=row_id, attempt=n, started_at=AT, finished_at=AT,
                         latency_ms=1.5, http_status=200, outcome="success", reason="STOP",
                         wait_s=0.0, possibly_billed=True)  # fmt: skip


def test_a_journal_many_batches_long_folds_as_if_read_whole(tmp_path: Path) -> None:
    old = [record(f"r{i:02d}", "failed", attempts=1, finished_at=AT) for i in range(12)]
    old_attempts = [attempt(r.row_id, 1) for r in old]
    first = Ledger(tmp_path)
    first.open()
    first.append(old, old_attempts)
    first.close()

    # 20 rows over many 3-record batches: rows 5-14 recorded twice and row 8 three times
    # (the latest wins), rows 0-11 supersede the ledger's rows, rows 12-19 are new.
    journal = [
        record(f"r{i:02d}", "succeeded", attempts=n, text=str(n), finished_at=AT + timedelta(n))
        for n, group in enumerate([range(20), range(5, 15), range(8, 9)], 2)
        for i in group
    ]
    journal_attempts = [attempt(r.row_id, r.attempts) for r in journal]
    crashed = Ledger(tmp_path, fold_batch=3)
    crashed.open()
    crashed.append(journal[:20], journal_attempts[:20])
    crashed.append(journal[20:], journal_attempts[20:])
    crash(crashed)
    with open(tmp_path / JOURNAL_FILE, "ab") as f:
        f.write(encode_line(asdict(record("r99")))[:-5])  # a torn tail is not folded

    reopened = Ledger(tmp_path, fold_batch=3)
    reopened.open()
    reopened.close()

    assert reopened.recovered == len(journal) == 31
    table = pq.read_table(tmp_path / LEDGER_FILE)
    assert table.schema == SCHEMA
    latest = {r.row_id: asdict(r) for r in [*old, *journal]}  # the fold's meaning, all in memory
    assert sorted(table.to_pylist(), key=lambda r: r["row_id"]) == sorted(
        latest.values(), key=lambda r: r["row_id"]
    )
    assert {r["row_id"]: r["attempts"] for r in table.to_pylist()}["r08"] == 4
    attempts = pq.read_table(tmp_path / ATTEMPTS_FILE).to_pylist()
    assert attempts == [asdict(a) for a in [*old_attempts, *journal_attempts]]  # all, in order
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]  # no spill left


def fold_peak(out: Path, records: int) -> int:
    """Python memory at the peak of folding a crashed run's ``records`` journal records."""
    crashed = Ledger(out)
    crashed.open()
    crashed.append([record(f"r{i:05d}", text="t" * 200, finished_at=AT, metadata="{}")
                    for i in range(records)])  # fmt: skip
    crash(crashed)
    reopened = Ledger(out, fold_batch=50)
    tracemalloc.start()
    try:
        reopened.open()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    reopened.close()
    assert reopened.recovered == records
    return peak


def test_the_fold_holds_a_batch_of_records_at_a_time_however_long_the_journal(
    tmp_path: Path,
) -> None:
    # Decoded records are Python objects (Arrow's buffers are not traced): a fold that held
    # the whole journal would need four times the memory for four times the records.
    small = fold_peak(tmp_path / "small", 300)
    large = fold_peak(tmp_path / "large", 1200)
    print(small, large)
    assert large < 1.3 * small


def test_a_ledger_from_before_a_column_existed_folds_with_nulls_in_it(tmp_path: Path) -> None:
    older = pa.schema([f for f in SCHEMA if f.name not in ("cost_usd", "metadata")])
    row = {**asdict(record("old", finished_at=AT)), "line": 7}
    pq.write_table(pa.Table.from_pylist([row], schema=older), tmp_path / LEDGER_FILE)
    ledger = Ledger(tmp_path)
    ledger.open()
    ledger.append([record("new", cost_usd=0.04, finished_at=AT)])
    ledger.close()
    table = pq.read_table(tmp_path / LEDGER_FILE)
    assert table.schema == SCHEMA
    rows = {r["row_id"]: r for r in table.to_pylist()}
    assert (rows["old"]["line"], rows["old"]["cost_usd"]) == (7, None)
    assert rows["new"]["cost_usd"] == 0.04


def test_journal_lines_read_back_as_the_standard_library_reads_them() -> None:
    """Lines are encoded by orjson: whatever a record holds, its line decodes to what ``json``
    makes of the same record; what orjson refuses (an int beyond 64 bits) is still written."""
    import json
    from datetime import UTC, datetime

    item = {"row_id": "é\u2028\"\\\n\t\x00", "cost": 0.1 + 0.2, "n": -0.0, "tiny": 2.5e-7,
            "at": datetime(2026, 12, 2, 5, 1, 2, 345678, tzinfo=UTC),
            "naive": datetime(2026, 1, 1), "list": [1, None, True, "x"]}  # fmt: skip
    expected = json.loads(json.dumps(item, default=datetime.isoformat))
    assert decode_line(encode_line(item)) == expected
    big = decode_line(encode_line({"n": 12345678901234567890123}))
    assert big is not None
    assert big["n"] == pytest.approx(1.2345678901234568e22)
