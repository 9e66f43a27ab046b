"""A full (or failing) output disk: the run stops feeding, keeps what it received in the space
it reserved, records the rest as failed and billed, exits 5 with one line, and a rerun sends
nothing for what was kept. Write errors are injected through ``storage.write_all``; one test
fills a real tmpfs where the machine allows mounting one."""

from __future__ import annotations

import errno
import fcntl
import os
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pyarrow.parquet as pq
import pytest

from pipeline.commands.run import run_and_report
from pipeline.commands.verify import verify
from pipeline.core.errors import DiskFull
from pipeline.emulator import EmulatorApp, EmulatorConfig, EmulatorTransport, Payload, create_app
from pipeline.run.control import Halt
from pipeline.run.scheduler import run_manifest
from pipeline.store import storage
from pipeline.store.batchbook import BatchBook, request_cancel
from pipeline.store.journal import Journal, encode_line, scan_journal
from pipeline.store.ledger import Ledger
from pipeline.store.schema import AttemptRecord, LedgerRecord
from tests.helpers import emulator, journal_records, run_config, write_csv

ROWS = 40


class FullDisk:
    """Image writes fail with ENOSPC after ``room`` of them: for good, or (``cured_by_reserve``)
    only while the run's reserve is held, as on a disk whose last free space is that reserve.
    (Images are the files written through ``DIR/.tmp/``; Linux's /proc tells the fd's path.)"""

    def __init__(self, out: Path, room: int, *, cured_by_reserve: bool) -> None:
        self.out = out
        self.room = room
        self.cured_by_reserve = cured_by_reserve
        self.writes = 0
        self.lock = threading.Lock()
        self.real = storage.write_all

    def __call__(self, fd: int, data: bytes) -> None:
        if "/.tmp/" in os.readlink(f"/proc/self/fd/{fd}"):  # status.json etc. always fit
            with self.lock:
                full = self.writes >= self.room
                if full and (not self.cured_by_reserve or (self.out / ".headroom").exists()):
                    raise OSError(errno.ENOSPC, "No space left on device")
                self.writes += 1
        self.real(fd, data)


def stat(app: EmulatorApp, name: str) -> int:
    value = app.stats_snapshot()[name]
    assert isinstance(value, int)
    return value


def ledger(out: Path) -> dict[str, dict[str, Any]]:
    return {r["row_id"]: r for r in pq.read_table(out / "ledger.parquet").to_pylist()}


def setup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, cured_by_reserve: bool
) -> tuple[Path, Path, EmulatorApp, FullDisk]:
    """A manifest, its output folder, the emulator, and a disk with room for three images."""
    rows = [{"id": f"r{i:02d}", "prompt": f"a lamp {i}"} for i in range(ROWS)]
    out = tmp_path / "out"
    disk = FullDisk(out, room=3, cured_by_reserve=cured_by_reserve)
    monkeypatch.setattr(storage, "write_all", disk)
    return write_csv(tmp_path / "m.csv", rows), out, emulator(), disk


def config(manifest: Path, out: Path) -> Any:
    return run_config(manifest, out, concurrency=4, disk_headroom_bytes=1 << 20)


async def test_answers_in_flight_when_the_disk_fills_are_kept_in_the_reserve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest, out, app, disk = setup(tmp_path, monkeypatch, cured_by_reserve=True)

    result = await run_manifest(config(manifest, out), EmulatorTransport(app))

    assert result.halt is Halt.DISK_FULL
    rows = ledger(out)
    assert ROWS > len(rows) >= 3  # stopped feeding
    assert {r["status"] for r in rows.values()} == {"succeeded"}  # every answer kept
    assert stat(app, "billed") == len(rows)
    assert not (out / ".headroom").exists()

    monkeypatch.setattr(storage, "write_all", disk.real)  # space freed
    await run_manifest(config(manifest, out), EmulatorTransport(app))

    assert {r["status"] for r in ledger(out).values()} == {"succeeded"}
    assert len(ledger(out)) == ROWS
    assert stat(app, "billed_duplicates") == 0  # nothing paid twice
    assert verify(out).problems == []


def test_answers_that_cannot_be_kept_are_failed_billed_rows_and_the_run_exits_5(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest, out, app, disk = setup(tmp_path, monkeypatch, cured_by_reserve=False)
    said: list[str] = []

    code = run_and_report(
        config(manifest, out), EmulatorTransport(app), argv=["nanobatch", "run"],
        out=lambda _: None, err=said.append,
    )  # fmt: skip

    assert code == 5
    assert len(said) == 1
    assert said[0].startswith("nanobatch: stopped: the disk is full")
    rows = ledger(out)
    lost = [r for r in rows.values() if r["status"] == "failed"]
    kept = [r for r in rows.values() if r["status"] == "succeeded"]
    assert len(kept) == 3
    assert lost
    assert {r["reason"] for r in lost} == {"WRITE_FAILED"}
    assert all(r["cost_usd"] > 0 and "ENOSPC" in r["error"] for r in lost)
    assert stat(app, "billed") == len(kept) + len(lost)  # each one is on the ledger
    attempts = pq.read_table(out / "attempts.parquet").to_pylist()
    assert all(a["possibly_billed"] for a in attempts if a["row_id"] in {r["row_id"] for r in lost})

    monkeypatch.setattr(storage, "write_all", disk.real)
    before = stat(app, "requests")
    anyio.run(run_manifest, config(manifest, out), EmulatorTransport(app))
    assert stat(app, "requests") - before == ROWS - len(kept)  # kept ones not resent
    assert len(ledger(out)) == ROWS


def test_a_failed_journal_append_leaves_nothing_to_duplicate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(tmp_path / "j", durable=True)
    journal.open()
    journal.append([{"n": 1}])
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("pipeline.store.journal.os.fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output"):
        journal.append([{"n": 2}])
    monkeypatch.setattr("pipeline.store.journal.os.fsync", real_fsync)
    journal.append([{"n": 2}])  # written again whole, as the run's writer does
    journal.close(remove=False)

    assert journal_records(tmp_path / "j") == [{"n": 1}, {"n": 2}]


class Failing:
    """A journal's file whose writes stop after ``room`` bytes and whose truncates fail
    ``refusals`` times (EIO): a disk failing under an append and its rollback."""

    def __init__(self, real: Any, room: int, refusals: int) -> None:
        self.real, self.room, self.refusals = real, room, refusals

    def write(self, data: memoryview) -> int:
        if self.room <= 0:
            raise OSError(errno.EIO, "Input/output error")
        written: int = self.real.write(data[: self.room])
        self.room -= written
        return written

    def truncate(self, size: int) -> int:
        if self.refusals:
            self.refusals -= 1
            raise OSError(errno.EIO, "Input/output error")
        result: int = self.real.truncate(size)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def torn_journal(path: Path, *, sole: bool, refusals: int) -> tuple[Journal, Any]:
    """A journal holding ``{"n": 1}`` whose append of ``{"n": 2}`` failed after 5 bytes, with
    its rollback's truncate failing (the first of ``refusals``); and its real file."""
    journal = Journal(path, durable=False, sole=sole)
    journal.open()
    journal.append([{"n": 1}])
    real = journal._file
    journal._file = Failing(real, room=5, refusals=refusals)  # type: ignore[assignment]
    with pytest.raises(OSError, match="Input/output"):
        journal.append([{"n": 2}])
    return journal, real


@pytest.mark.parametrize("sole", [True, False])
def test_a_rollback_that_fails_is_cut_off_before_the_next_append(
    tmp_path: Path, sole: bool
) -> None:
    """A failed append's rollback fails too: the torn part of the group is cut off before the
    next line, which would otherwise be glued to it and fail its checksum (a lost record)."""
    journal, real = torn_journal(tmp_path / "j", sole=sole, refusals=1)
    assert (tmp_path / "j").stat().st_size > len(encode_line({"n": 1}))  # the torn part stays
    journal._file = Failing(real, room=1 << 20, refusals=0)  # type: ignore[assignment]
    journal.append([{"n": 2}])  # written again, as the run's writer does
    journal.append([{"n": 3}])
    journal.close(remove=False)

    assert list(scan_journal(tmp_path / "j")) == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_a_journal_that_cannot_cut_a_torn_tail_appends_nothing_after_it(tmp_path: Path) -> None:
    """While the torn part cannot be cut off, appends raise and write nothing: the records stay
    unwritten (their rows pending), never glued to it."""
    journal, real = torn_journal(tmp_path / "j", sole=True, refusals=2)
    size = (tmp_path / "j").stat().st_size
    journal._file = Failing(real, room=1 << 20, refusals=1)  # type: ignore[assignment]
    with pytest.raises(OSError, match="Input/output"):
        journal.append([{"n": 3}])
    assert (tmp_path / "j").stat().st_size == size  # nothing appended after the torn part
    journal.append([{"n": 3}])  # the disk is back: cut, then appended
    journal.close(remove=False)

    assert list(scan_journal(tmp_path / "j")) == [{"n": 1}, {"n": 3}]


def attempt(row: str, n: int) -> AttemptRecord:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return AttemptRecord(row, n, now, now, 1.0, 200, "ok", "", 0.0, True, cost_usd=0.04)


@pytest.mark.parametrize("second_has_attempts", [True, False])
def test_a_cut_still_pending_is_where_the_next_group_rolls_back_to(
    tmp_path: Path, second_has_attempts: bool
) -> None:
    """A group's attempts fail to write and their rollbacks fail (a cut pending). The next
    group's records then fail: its attempts are rolled back to where the cut leaves the
    journal, not to the length the torn bytes gave it, so the cut is neither lost nor
    misplaced, and no later attempt is glued to garbage (found by a review of 639ca56)."""
    ledger = Ledger(tmp_path)
    ledger.open()
    attempts, records = ledger._attempts, ledger._records
    real, real_records = attempts._file, records._file
    attempts._file = Failing(real, room=5, refusals=2)  # type: ignore[assignment]
    with pytest.raises(OSError, match="Input/output"):
        ledger.append([LedgerRecord("a", 1, "succeeded", "", "m", "p")], [attempt("a", 1)])
    attempts._file = real
    records._file = Failing(real_records, room=0, refusals=0)  # type: ignore[assignment]
    with pytest.raises(OSError, match="Input/output"):
        ledger.append([LedgerRecord("a", 1, "succeeded", "", "m", "p")],
                      [attempt("a", 1)] if second_has_attempts else [])  # fmt: skip
    records._file = real_records
    ledger.append([LedgerRecord("a", 1, "succeeded", "", "m", "p")],
                  [attempt("a", 1), attempt("a", 2)])  # fmt: skip
    found = list(scan_journal(attempts.path))
    ledger.close()

    assert [(r["row_id"], r["attempt"]) if isinstance(r, dict) else r for r in found] == [
        ("a", 1),
        ("a", 2),
    ]


def torn_book(out: Path) -> BatchBook:
    """An open batch book holding j0001, whose append of ``uploaded`` failed midway and whose
    rollback failed too: a cut pending."""
    book = BatchBook(out)
    book.open()
    book.plan(model="m", request_file="f", size=1, sha256="x", rows=["a"], reserved_usd=1.0)
    journal = book._journal
    assert journal is not None
    real = journal._file
    journal._file = Failing(real, room=5, refusals=1)  # type: ignore[assignment]
    with pytest.raises(OSError, match="Input/output"):
        book.record("j0001", "uploaded", name="files/1")
    journal._file = real
    return book


def test_a_pending_cut_keeps_what_another_process_appended(tmp_path: Path) -> None:
    """The batch book is appended to by ``batch cancel`` from another process, which closes a
    torn tail with a newline first. A cut pending from a failed rollback must not delete that
    process's fsynced line (the user's cancel): the torn bytes stay one damaged line of their
    own instead (found by a review of 639ca56)."""
    book = torn_book(tmp_path)
    request_cancel(tmp_path, ["j0001"])  # `nanobatch batch cancel`, another process
    book.record("j0001", "uploaded", name="files/1")  # the run goes on
    book.close()

    assert [job.cancel_requested for job in BatchBook.load(tmp_path)] == [True]


def test_a_pending_cut_waits_for_another_processs_append_to_finish(tmp_path: Path) -> None:
    """``batch cancel`` appends under the book's lock; a pending cut takes it too, so the
    append cannot fall between the cut's length check and its truncate (and be cut off)."""
    book = torn_book(tmp_path)
    other = os.open(book.path, os.O_RDWR)  # ``batch cancel``, mid-append
    fcntl.flock(other, fcntl.LOCK_EX)
    size = book.path.stat().st_size
    going = threading.Thread(target=book.record, args=("j0001", "uploaded"), kwargs={"name": "f"})
    going.start()
    going.join(0.2)
    try:
        assert going.is_alive()  # the cut waits for the lock
        assert book.path.stat().st_size == size
    finally:
        os.close(other)  # the lock with it
        going.join()
    book.close()
    assert [r.get("kind") for r in journal_records(book.path)] == ["opened", "planned", "uploaded"]


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 6 MB tmpfs, or a skip where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_a_real_full_disk_stops_the_run_and_a_rerun_after_freeing_space_pays_nothing_twice(
    tmp_path: Path, tmpfs: Path
) -> None:
    manifest = write_csv(
        tmp_path / "m.csv", [{"id": f"r{i:02d}", "prompt": f"a lamp {i}"} for i in range(30)]
    )
    out = tmpfs / "out"
    app = create_app(EmulatorConfig(payload=Payload.REALISTIC))
    settings = {"concurrency": 4, "disk_headroom_bytes": 2 << 20, "image_size": "512"}

    result = await run_manifest(run_config(manifest, out, **settings), EmulatorTransport(app))

    assert result.halt is Halt.DISK_FULL
    assert result.disk_error is not None
    assert result.disk_error.startswith("ENOSPC")
    billed = stat(app, "billed")
    assert billed < 30

    # Still full: the next run cannot hold its reserve, so it sends nothing.
    with pytest.raises(DiskFull):
        await run_manifest(run_config(manifest, out, **settings), EmulatorTransport(app))
    assert stat(app, "billed") == billed

    await anyio.run_process(["mount", "-o", "remount,size=64m", str(tmpfs)])  # space freed
    await run_manifest(run_config(manifest, out, **settings), EmulatorTransport(app))

    rows = ledger(out)
    assert len(rows) == 30
    assert {r["status"] for r in rows.values()} == {"succeeded"}
    assert verify(out).problems == []
    assert stat(app, "billed_duplicates") == result.unstored
