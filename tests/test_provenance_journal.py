"""Provenance records kept in one journal: appended per row without an fsync, made durable
once per group before the records that rely on them, and read back whatever a kill, a flipped
byte or an older version left."""

from __future__ import annotations

import errno
import io
import json
import os
import threading
from pathlib import Path

import pytest
from PIL import Image

from pipeline.core.clock import VirtualClock
from pipeline.core.types import ImagePart
from pipeline.emulator import parse_latency
from pipeline.store import journal as journal_lines
from pipeline.store import provenance
from pipeline.store.journal import decode_line
from pipeline.store.provenance import JOURNAL_FILE, Provenance, ProvenanceJournal
from tests.helpers import emulator, run, run_config, write_csv


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, "PNG")
    return buf.getvalue()


def record(row_id: str, fingerprint: str | None = "fp") -> Provenance:
    return Provenance(row_id, fingerprint, ((f"images/{row_id}.png", "0" * 64),), 0.039, "flex")


def spy_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the files (and folders) fsynced from now on, in order."""
    names: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        names.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return names


def test_storing_a_row_fsyncs_its_images_and_nothing_for_its_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A per-row record file and its fsync cost ~10% of a small image's CPU: the record is a
    journal line, made durable by the group commit (next test), not by the row."""
    (tmp_path / "images").mkdir()
    journal = ProvenanceJournal(tmp_path)
    journal.add("warm", record("warm"))  # the journal made (and its name fsynced) once
    fsynced = spy_fsyncs(monkeypatch)
    for row_id in ("a", "b", "c"):
        provenance.store(tmp_path, row_id, (ImagePart(png(), "image/png"),), journal=journal,
                         row_id=row_id, fingerprint="fp")  # fmt: skip
    assert len(fsynced) == 3  # one per image: its own contents
    assert JOURNAL_FILE not in fsynced
    journal.close()
    assert [provenance.read(tmp_path, r).fingerprint for r in "abc"] == ["fp"] * 3  # type: ignore[union-attr]


async def test_a_run_makes_each_rows_provenance_durable_before_its_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: VirtualClock
) -> None:
    """At every fsync of the ledger's journal, each succeeded row it holds has its provenance
    line in what an fsync of the provenance journal already covered."""
    rows = [{"id": f"r{i}", "prompt": f"p{i}"} for i in range(12)]
    out = tmp_path / "out"
    durable = b""  # the provenance journal as of its last fsync
    commits: list[set[str]] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        nonlocal durable
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        if name == JOURNAL_FILE:
            covered = os.fstat(fd).st_size  # what is there before the fsync is made durable
        real(fd)
        if name == JOURNAL_FILE:
            durable = (out / JOURNAL_FILE).read_bytes()[:covered]
        elif name == "ledger.journal":
            lines = (out / "ledger.journal").read_bytes().splitlines(keepends=True)
            records = [decode_line(line) or {} for line in lines]
            done = {r["row_id"] for r in records if r.get("status") == "succeeded"}
            commits.append({r for r in done if b'"stem":"%s"' % r.encode() not in durable})

    monkeypatch.setattr(os, "fsync", fsync)
    # One at a time, each answer slower than the writer's pace: the rows reach the writer in
    # several groups, each its own commit.
    config = run_config(write_csv(tmp_path / "m.csv", rows), out, concurrency=1, clock=clock)
    await run(config, emulator(clock=clock, latency=parse_latency("0.1")))

    assert len(commits) >= 2
    assert commits == [set()] * len(commits)
    kept = {r: provenance.read(out, r) for r in (row["id"] for row in rows)}
    assert all(p is not None and p.fingerprint for p in kept.values())


def test_a_torn_last_line_or_a_damaged_one_costs_only_its_own_record(tmp_path: Path) -> None:
    journal = ProvenanceJournal(tmp_path)
    for row_id in ("a", "b"):
        journal.add(row_id, record(row_id))
    journal.close()
    path = tmp_path / JOURNAL_FILE
    with open(path, "ab") as f:
        f.write(b'1234abcd {"stem": "c", "row')  # a kill in the middle of an append
    journal = ProvenanceJournal(tmp_path)
    journal.add("c", record("c"))  # the torn tail is cut off first
    journal.close()
    assert [provenance.read(tmp_path, r) for r in "abc"] == [record(r) for r in "abc"]

    data = bytearray(path.read_bytes())
    data[data.index(b'"a"') + 1] ^= 1  # a flipped bit in a's line
    path.write_bytes(bytes(data))
    assert provenance.read(tmp_path, "a") is None  # its images are not adopted: sent again
    assert [provenance.read(tmp_path, r) for r in "bc"] == [record(r) for r in "bc"]


def test_the_latest_record_of_a_row_wins_including_an_older_versions_file(
    tmp_path: Path,
) -> None:
    older = provenance.folder(tmp_path) / "shop" / "a"  # a name template's sub-folder
    older.parent.mkdir(parents=True)
    older.write_text(json.dumps({"row_id": "a", "fingerprint": "old", "files": []}))
    assert provenance.read(tmp_path, "shop/a") == Provenance("a", "old", ())
    assert provenance.any_records(tmp_path)

    journal = ProvenanceJournal(tmp_path)
    journal.add("shop/a", record("a", "new"))
    journal.add("shop/a", record("a", None))  # verify --fix rejected it since
    journal.close()
    assert provenance.read(tmp_path, "shop/a") == record("a", None)

    later = os.stat(tmp_path / JOURNAL_FILE).st_mtime + 60
    os.utime(older, (later, later))  # an older nanobatch ran since, and wrote its file
    assert provenance.read(tmp_path, "shop/a") == Provenance("a", "old", ())


def test_records_added_from_many_threads_are_all_kept(tmp_path: Path) -> None:
    journal = ProvenanceJournal(tmp_path)

    def add(worker: int) -> None:
        for i in range(50):
            journal.add(f"w{worker}-{i}", record(f"w{worker}-{i}"))

    threads = [threading.Thread(target=add, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    journal.sync()
    journal.close()
    assert provenance.any_records(tmp_path)
    for w in range(8):
        for i in range(50):
            assert provenance.read(tmp_path, f"w{w}-{i}") == record(f"w{w}-{i}")


def test_rows_append_while_the_journal_is_fsynced_and_the_next_sync_covers_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The group commit's fsync must not hold up the rows storing their images meanwhile."""
    journal = ProvenanceJournal(tmp_path)
    journal.add("a", record("a"))
    entered, release, added = threading.Event(), threading.Event(), threading.Event()
    fsyncs: list[int] = []
    real = os.fsync

    def slow(fd: int) -> None:
        fsyncs.append(fd)
        entered.set()
        release.wait(5)
        real(fd)

    monkeypatch.setattr(os, "fsync", slow)
    syncing = threading.Thread(target=journal.sync)
    syncing.start()
    assert entered.wait(5)

    def add() -> None:
        journal.add("b", record("b"))
        added.set()

    adder = threading.Thread(target=add)
    adder.start()
    appended_meanwhile = added.wait(2)
    release.set()
    syncing.join()
    adder.join()
    assert appended_meanwhile
    journal.sync()  # "b" came after the first fsync began: this one covers it
    assert len(fsyncs) == 2
    journal.close()
    assert provenance.read(tmp_path, "b") == record("b")


def test_lookups_while_rows_append_read_only_what_was_appended_since(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resumed run looks every pending row up as it plans it, while its workers append the
    lines of the rows they store: each lookup must not decode the whole journal again (that
    made a resume quadratic in the journal's length)."""
    journal = ProvenanceJournal(tmp_path)
    for i in range(300):
        journal.add(f"old{i}", record(f"old{i}"))
    assert provenance.read(tmp_path, "old0") == record("old0")
    decoded: list[bytes] = []
    real = journal_lines.decode_line

    def counting(line: bytes) -> dict[str, object] | None:
        decoded.append(line)
        return real(line)

    monkeypatch.setattr(journal_lines, "decode_line", counting)
    for i in range(100):
        journal.add(f"new{i}", record(f"new{i}"))  # a worker stores a row meanwhile
        assert provenance.read(tmp_path, f"old{i}") == record(f"old{i}")
        assert provenance.read(tmp_path, f"new{i}") == record(f"new{i}")
    journal.close()
    assert len(decoded) <= 2 * 100  # each new line (and at most one before it) once, not 300+


def test_a_killed_runs_lines_are_fsynced_before_the_next_process_relies_on_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A killed run's lines may be in the page cache only. The next run adopts images by them
    and makes ADOPTED records durable: its first sync must fsync them first, even before it
    appends a line of its own (a power cut must not leave the records without them)."""
    killed = ProvenanceJournal(tmp_path)
    killed.add("a", record("a"))  # then SIGKILL: no sync, no close
    fsynced = spy_fsyncs(monkeypatch)
    after = ProvenanceJournal(tmp_path)
    assert provenance.read(tmp_path, "a") == record("a")  # adopted by it
    after.sync()  # the group commit of the ADOPTED record
    assert JOURNAL_FILE in fsynced
    assert tmp_path.name in fsynced  # and its name, in case the kill came before that fsync
    fsynced.clear()
    after.sync()
    assert fsynced == []  # once
    after.close()


def test_after_a_failed_fsync_the_lines_are_written_again_not_trusted_to_a_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Linux marks the pages a failed fsync could not write clean: a second fsync succeeds
    without writing them. The disk guard retries the group commit after a disk error, so the
    retry must append the lines again, or the records become durable without them."""
    journal = ProvenanceJournal(tmp_path)
    journal.sync()  # nothing inherited
    journal.add("a", record("a"))
    real = os.fsync
    fail = [True]

    def fsync(fd: int) -> None:
        if fail.pop() if fail else False:
            raise OSError(errno.EIO, "Input/output error")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="Input/output"):
        journal.sync()
    journal.add("b", record("b"))  # a row stored before the retry
    journal.sync()  # the disk guard's second try
    journal.close()
    stems = [(decode_line(line) or {}).get("stem") for line in
             (tmp_path / JOURNAL_FILE).read_bytes().splitlines(keepends=True)]  # fmt: skip
    assert stems == ["a", "b", "a", "b"]  # written again after the failure, in order
    assert [provenance.read(tmp_path, r) for r in "ab"] == [record(r) for r in "ab"]


def test_an_older_versions_file_goes_once_its_rows_line_is_durable_so_a_copy_cannot_revive_it(
    tmp_path: Path,
) -> None:
    """A copy that does not keep file times (``cp -r``) gives every file the time of the copy:
    an out-of-date record file would then look newer than the row's line, and win."""
    older = provenance.folder(tmp_path) / "a"
    older.parent.mkdir(parents=True)
    older.write_text(json.dumps({"row_id": "a", "fingerprint": "old", "files": []}))
    kept = provenance.folder(tmp_path) / "b"  # a row this run did not make again
    kept.write_text(json.dumps({"row_id": "b", "fingerprint": "old", "files": []}))
    journal = ProvenanceJournal(tmp_path)
    journal.add("a", record("a", "new"))
    assert older.exists()  # not before its line is durable
    journal.sync()
    journal.close()
    assert not older.exists()
    later = os.stat(tmp_path / JOURNAL_FILE).st_mtime + 60
    os.utime(kept, (later, later))  # as a copy made now would leave it
    assert provenance.read(tmp_path, "a") == record("a", "new")
    assert provenance.read(tmp_path, "b") == Provenance("b", "old", ())
