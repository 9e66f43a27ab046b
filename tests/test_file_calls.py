"""A row's file work with fewer system calls: folders made the first time they are missing (not
checked for every row), temp files named by a counter (no ``mkstemp``), the in-flight journal's
length kept rather than asked, and requests without source images built on the event loop.
Each shortcut keeps what the slower way guaranteed."""

from __future__ import annotations

import itertools
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from pipeline.core.types import ImagePart, Job
from pipeline.plan.sources import SourceCache
from pipeline.providers.base import PreparedRequest
from pipeline.providers.gemini.provider import GeminiProvider
from pipeline.store import filesum, provenance, spool, storage
from pipeline.store.journal import Journal, encode_line, scan_journal
from tests.helpers import emulator, make_image, run, run_config, write_csv


def _png(tmp_path: Path) -> bytes:
    return make_image(tmp_path / "src.png").read_bytes()


def test_an_image_is_stored_when_the_temp_folder_is_missing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / storage.IMAGES_DIR).mkdir(parents=True)  # as a run makes it; no .tmp/ yet
    data = _png(tmp_path)
    stored = storage.store_images(out, "r1", (ImagePart(data, "image/png"),))
    assert (out / stored[0].rel_path).read_bytes() == data
    assert (out / storage.TMP_DIR).is_dir()
    assert list((out / storage.TMP_DIR).iterdir()) == []  # nothing left behind


def test_the_temp_folder_removed_mid_run_is_made_again(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / storage.IMAGES_DIR).mkdir(parents=True)
    data = _png(tmp_path)
    storage.store_images(out, "r1", (ImagePart(data, "image/png"),))
    (out / storage.TMP_DIR).rmdir()
    stored = storage.store_images(out, "r2", (ImagePart(data, "image/png"),))
    assert (out / stored[0].rel_path).read_bytes() == data


def test_small_files_skip_a_temp_name_left_by_an_earlier_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "_new_names", itertools.count(7))
    stale = tmp_path / f".tmp-{os.getpid()}-7"  # a crashed process with this pid left it
    stale.write_bytes(b"someone else's")
    target = tmp_path / "record"
    filesum.write_small(target, b"mine", tmp_path)
    assert target.read_bytes() == b"mine"
    assert stale.read_bytes() == b"someone else's"  # not reused, not truncated
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # as mkstemp made them
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([stale.name, "record"])


def test_a_spool_makes_its_folder_and_skips_a_name_in_the_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "out" / ".tmp"
    folder.parent.mkdir()
    monkeypatch.setattr(storage, "_new_names", itertools.count(3))
    first = spool.Spool(folder)  # the folder is made
    folder.joinpath(f"spool-{os.getpid()}-4").write_bytes(b"stale")
    second = spool.Spool(folder)  # 4 is taken: the next name
    assert Path(second.path).name == f"spool-{os.getpid()}-5"
    second.write(b"abc")
    closed = second.close()
    assert not isinstance(closed, bytes)
    assert Path(closed.path).read_bytes() == b"abc"
    assert folder.joinpath(f"spool-{os.getpid()}-4").read_bytes() == b"stale"
    first.discard()


def test_a_spool_whose_folder_cannot_be_made_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        spool.Spool(tmp_path / "missing" / "deeper")  # the parent is missing too


class _FailingWrites:
    """A journal file whose writes fail after ``allowed`` bytes (a disk filling up)."""

    def __init__(self, file: Any, allowed: int) -> None:
        self._file, self._allowed = file, allowed

    def write(self, data: Any) -> int:
        if self._allowed <= 0:
            raise OSError(28, "No space left on device")
        n: int = self._file.write(bytes(data)[: self._allowed])
        self._allowed -= n
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


def test_a_sole_journal_knows_its_length_and_rolls_back_a_failed_group(tmp_path: Path) -> None:
    path = tmp_path / "inflight.journal"
    journal = Journal(path, durable=False, sole=True)
    journal.open()
    journal.append([{"n": 1}])
    assert journal.mark() == path.stat().st_size
    real = journal._file
    journal._file = _FailingWrites(real, allowed=5)  # type: ignore[assignment]
    with pytest.raises(OSError, match="No space"):
        journal.append([{"n": 2}, {"n": 3}])
    journal._file = real
    assert journal.mark() == path.stat().st_size  # the torn tail cut off, the length known
    journal.append([{"n": 4}])
    journal.close(remove=False)
    assert list(scan_journal(path)) == [{"n": 1}, {"n": 4}]


def test_a_shared_journal_never_cuts_what_another_process_appended(tmp_path: Path) -> None:
    """The batch book: ``batch cancel`` appends to it while a run holds it open."""
    path = tmp_path / "book.journal"
    journal = Journal(path, durable=True)
    journal.open()
    journal.append([{"n": 1}])
    with open(path, "ab") as other:  # another process's append
        other.write(encode_line({"n": "other"}))
    real = journal._file
    journal._file = _FailingWrites(real, allowed=3)  # type: ignore[assignment]
    with pytest.raises(OSError, match="No space"):
        journal.append([{"n": 2}])
    journal._file = real
    journal.close(remove=False)
    records = list(scan_journal(path))
    assert records[:2] == [{"n": 1}, {"n": "other"}]


async def test_requests_are_built_in_a_thread_only_when_they_read_source_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built_on: dict[str, bool] = {}
    prepare = GeminiProvider.prepare

    def recording(self: GeminiProvider, job: Job, sources: SourceCache) -> PreparedRequest:
        built_on[job.row_id] = threading.current_thread() is threading.main_thread()
        return prepare(self, job, sources)

    monkeypatch.setattr(GeminiProvider, "prepare", recording)
    source = make_image(tmp_path / "ref.png")
    manifest = write_csv(tmp_path / "m.csv", [
        {"id": "plain", "prompt": "a red chair"},
        {"id": "edit", "prompt": "the chair in blue", "images": str(source)},
    ])  # fmt: skip
    result = await run(run_config(manifest, tmp_path / "out"), emulator())
    assert result.by_status["succeeded"] == 2
    assert built_on == {"plain": True, "edit": False}


def test_each_image_is_durable_before_its_cached_pages_are_let_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dropping the page cache of an image (``drop_cached``) must come after its fsync, and
    only for images: the kernel may then reuse the memory, the bytes being on disk."""
    events: list[tuple[str, int]] = []
    fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        fsync(fd)
        events.append(("fsync", os.fstat(fd).st_ino))

    def recording_fadvise(fd: int, offset: int, length: int, advice: int) -> None:
        assert (offset, length, advice) == (0, 0, os.POSIX_FADV_DONTNEED)
        events.append(("drop", os.fstat(fd).st_ino))

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(storage, "_fadvise", recording_fadvise)
    out = tmp_path / "out"
    (out / storage.IMAGES_DIR).mkdir(parents=True)
    data = _png(tmp_path)
    spooled = spool.Spool(out / storage.TMP_DIR)
    spooled.write(data)
    closed = spooled.close()
    assert not isinstance(closed, bytes)
    images = (ImagePart(b"", "image/png", closed), ImagePart(data, "image/png"))
    stored = storage.store_images(out, "r1", images)
    inodes = [(out / s.rel_path).stat().st_ino for s in stored]
    assert [(out / s.rel_path).read_bytes() for s in stored] == [data, data]
    assert stored[0].width == 64  # its header read before its pages went
    for inode in inodes:
        assert events.index(("fsync", inode)) < events.index(("drop", inode))
    assert sorted(i for kind, i in events if kind == "drop") == sorted(inodes)


def test_the_provenance_folder_and_journal_are_durable_in_their_parent_when_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new folder's name is durable like a file's (``storage.make_folders``): a power cut
    must not take ``provenance/`` and its mark (or the journal), which would make a crashed
    run's images look older than the mark (``recovery``)."""
    synced: list[Path] = []
    real = storage.fsync_dir

    def fsync_dir(path: Path) -> None:
        synced.append(Path(path))
        real(path)

    monkeypatch.setattr(provenance, "fsync_dir", fsync_dir)
    monkeypatch.setattr(storage, "fsync_dir", fsync_dir)  # storage.make_folders'
    out = tmp_path / "out"
    out.mkdir()
    provenance.records_since(out)
    assert out in synced  # provenance/ was made: its entry in out/ is durable
    synced.clear()
    record = provenance.Provenance("r", "f", (("images/shop/r.png", "0" * 64),))
    journal = provenance.ProvenanceJournal(out)
    journal.add("shop/r", record)  # the journal is made now: its name durable in out/
    journal.close()
    assert synced == [out]
    assert provenance.read(out, "shop/r") == record
