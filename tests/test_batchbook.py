"""The batch intent journal: replayed phases, a torn last line, a damaged line, the read API
and ``cancel_requested`` appended from another process."""

from __future__ import annotations

import shutil
from pathlib import Path

from pipeline.store.batchbook import BATCH_DIR, BOOK_FILE, BatchBook, request_cancel
from pipeline.store.bookjob import Phase
from pipeline.store.journal import decode_line, encode_line


def _planned(book: BatchBook, rows: list[str], model: str = "m") -> str:
    job = book.plan(
        model=model,
        request_file=f"{BATCH_DIR}/x.jsonl",
        size=123,
        sha256="ab",
        rows=rows,
        reserved_usd=0.5,
    )
    return job.job_id


def test_replay_gives_each_jobs_last_phase_and_what_finds_it_again(tmp_path: Path) -> None:
    book = BatchBook(tmp_path)
    book.open()
    first = _planned(book, ["r1", "r2"])
    second = _planned(book, ["r3"])
    book.record(first, Phase.UPLOAD_STARTED, session_url="http://secret/session")
    book.record(first, Phase.UPLOADED, file_name="files/abc")
    book.record(first, Phase.CREATING)
    book.record(first, Phase.CREATED, batch_name="batches/1")
    book.record(second, Phase.ABANDONED, reason="resubmitted")
    tag = book.tag
    book.close()

    jobs = {j.job_id: j for j in BatchBook.load(tmp_path)}
    assert list(jobs) == ["j0001", "j0002"]
    one, two = jobs["j0001"], jobs["j0002"]
    assert one.phase is Phase.CREATED
    assert (one.batch_name, one.file_name, one.rows) == ("batches/1", "files/abc", ["r1", "r2"])
    assert one.display_name == f"nanobatch-{tag}-j0001"
    assert one.session_url == "http://secret/session"
    assert "secret" not in repr(one)
    assert (one.requests, one.bytes, one.reserved_usd) == (2, 123, 0.5)
    assert one.holds_rows
    assert one.exists_remotely
    assert two.phase is Phase.ABANDONED
    assert not two.holds_rows

    again = BatchBook(tmp_path)
    again.open()  # the tag is kept, job ids go on from the last one
    assert again.tag == tag
    assert again.next_job_id() == "j0003"
    assert [j.job_id for j in again.live()] == ["j0001"]
    again.record("j0001", Phase.ENDED, state="SUCCEEDED")
    again.record("j0001", Phase.FOLDED)
    again.close()
    assert BatchBook.load(tmp_path)[0].folded


def test_a_torn_last_line_is_dropped_and_appends_follow_intact_lines(tmp_path: Path) -> None:
    book = BatchBook(tmp_path)
    book.open()
    job = _planned(book, ["r1"])
    book.record(job, Phase.CREATING)
    book.close()
    path = tmp_path / BATCH_DIR / BOOK_FILE
    with open(path, "ab") as f:
        f.write(b'0badc0de {"kind":"created","job":"j0001","batch_na')  # a crash mid-append

    assert BatchBook.load(tmp_path)[0].phase is Phase.CREATING  # found again by display name
    book = BatchBook(tmp_path)
    book.open()
    book.record(job, Phase.CREATED, batch_name="batches/7")
    book.close()
    loaded = BatchBook(tmp_path)
    loaded.replay()
    assert loaded.damaged == 0
    assert loaded.jobs[job].batch_name == "batches/7"


def test_a_damaged_line_is_counted_and_the_lines_after_it_still_count(tmp_path: Path) -> None:
    book = BatchBook(tmp_path)
    book.open()
    first = _planned(book, ["r1"])
    second = _planned(book, ["r2"])
    book.record(second, Phase.CREATED, batch_name="batches/2")
    book.close()
    path = tmp_path / BATCH_DIR / BOOK_FILE
    lines = path.read_bytes().splitlines(keepends=True)
    # The second job's planned line: a flipped bit.
    lines[2] = lines[2].replace(b'"r2"', b'"r3"')
    path.write_bytes(b"".join(lines))

    loaded = BatchBook(tmp_path)
    loaded.replay()
    assert loaded.damaged == 1
    assert loaded.jobs[first].rows == ["r1"]
    lost = loaded.jobs[second]
    assert lost.incomplete
    assert lost.rows == []
    assert (lost.phase, lost.batch_name) == (Phase.CREATED, "batches/2")


def test_cancel_requested_is_appended_beside_a_run_that_holds_the_book(tmp_path: Path) -> None:
    book = BatchBook(tmp_path)
    book.open()
    job = _planned(book, ["r1"])
    request_cancel(tmp_path, [job])  # another process, the run's book still open
    book.record(job, Phase.CREATED, batch_name="batches/3")
    book.close()
    [loaded] = BatchBook.load(tmp_path)
    assert loaded.cancel_requested
    assert loaded.phase is Phase.CREATED


def test_cancel_after_a_torn_tail_keeps_the_request(tmp_path: Path) -> None:
    book = BatchBook(tmp_path)
    book.open()
    job = _planned(book, ["r1"])
    book.close()
    with open(tmp_path / BATCH_DIR / BOOK_FILE, "ab") as f:
        f.write(b"12345678 {torn")
    request_cancel(tmp_path, [job])
    loaded = BatchBook(tmp_path)
    loaded.replay()
    assert loaded.jobs[job].cancel_requested
    assert loaded.damaged == 1  # the torn piece, closed by a newline: one line of its own


def test_an_empty_directory_has_no_jobs(tmp_path: Path) -> None:
    assert BatchBook.load(tmp_path) == []


def tagless_book(out: Path, lines: int = 3) -> Path:
    """A book as the versions before the tag was repeated wrote it: j0001 being created (its
    first ``lines`` lines: 2, planned only)."""
    path = out / BATCH_DIR / BOOK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    book: list[dict[str, object]] = [{"kind": "opened", "tag": "0ld7a9ff"},
             {"kind": "planned", "job": "j0001", "rows": ["r1"], "model": "m"},
             {"kind": "creating", "job": "j0001"}]  # fmt: skip
    path.write_bytes(b"".join(encode_line(line) for line in book[:lines]))
    return path


def _damage_first_line(tmp_path: Path) -> None:
    path = tmp_path / BATCH_DIR / BOOK_FILE
    data = bytearray(path.read_bytes())
    data[20] ^= 0x01  # inside the first line's JSON: its checksum no longer matches
    path.write_bytes(bytes(data))


def test_a_damaged_first_line_keeps_the_tag_every_record_repeats(tmp_path: Path) -> None:
    """The tag names the jobs at Google: a new one would hide a job a crash left in
    ``creating`` (created there, not yet recorded), which would then be created twice."""
    book = BatchBook(tmp_path)
    book.open()
    job = _planned(book, ["r1"])
    book.record(job, Phase.CREATING)
    tag, name = book.tag, book.jobs[job].display_name
    book.close()
    _damage_first_line(tmp_path)

    again = BatchBook(tmp_path)
    again.open()
    assert again.damaged == 1
    assert (again.tag, again.jobs[job].display_name) == (tag, name)
    again.close()


def test_a_book_that_lost_its_tag_with_a_job_being_created_is_refused(tmp_path: Path) -> None:
    """A book from before every record repeated the tag: with its first line damaged, a job in
    ``creating`` can no longer be looked for at Google, so the run refuses rather than create
    it again; without such a job, a new tag is harmless."""
    import pytest

    from pipeline.store.batchbook import BookTagLost

    path = tagless_book(tmp_path)
    _damage_first_line(tmp_path)
    before = path.read_bytes()
    with pytest.raises(BookTagLost, match="j0001"):
        BatchBook(tmp_path).open()
    assert path.read_bytes() == before  # nothing appended, no new tag

    tagless_book(tmp_path, lines=2)
    _damage_first_line(tmp_path)
    book = BatchBook(tmp_path)
    book.open()  # planned only: never sent to Google under the lost name
    assert book.tag
    assert book.jobs["j0001"].display_name == f"nanobatch-{book.tag}-j0001"
    book.close()


def _folder_with_a_job(out: Path) -> tuple[str, str]:
    """``out`` made, with a book holding one planned job: the job's id and the book's tag."""
    out.mkdir()
    book = BatchBook(out)
    book.open()
    job = _planned(book, ["r1"])
    book.close()
    return job, book.tag


def test_a_copied_folder_plans_its_jobs_under_names_of_its_own(tmp_path: Path) -> None:
    """``cp -r out out2`` with jobs on their way: each folder then plans a ``j0003`` of its own
    rows. Under one tag both would be ``nanobatch-<tag>-j0003`` at Google, and a folder that
    looks a job up by name (a crash while creating it) or sweeps its unneeded files would take
    the other folder's. The copy takes a new tag; a job with something at Google keeps its name,
    one with nothing there yet is named again (each folder makes its own)."""
    original = tmp_path / "out"
    sent, tag = _folder_with_a_job(original)
    book = BatchBook(original)
    book.open()
    book.record(sent, Phase.UPLOAD_STARTED, session_url="http://session")
    waiting = _planned(book, ["r2"])
    book.close()
    copy = tmp_path / "out2"
    shutil.copytree(original, copy)

    theirs, ours = BatchBook(original), BatchBook(copy)
    theirs.open()
    ours.open()
    assert theirs.tag == tag  # the folder the book was made in keeps it
    assert ours.tag not in ("", tag)
    assert ours.jobs[sent].display_name == theirs.jobs[sent].display_name
    assert ours.jobs[waiting].display_name == f"nanobatch-{ours.tag}-{waiting}"
    assert theirs.jobs[waiting].display_name == f"nanobatch-{tag}-{waiting}"
    assert _planned(ours, ["r3"]) == _planned(theirs, ["r4"]) == "j0003"
    assert ours.jobs["j0003"].display_name != theirs.jobs["j0003"].display_name
    ours.close()
    theirs.close()

    again = BatchBook(copy)  # reopened: the copy's tag and names stay
    again.open()
    assert again.tag == ours.tag
    assert {j.job_id: j.display_name for j in again.jobs.values()} == {
        sent: f"nanobatch-{tag}-{sent}",
        waiting: f"nanobatch-{ours.tag}-{waiting}",
        "j0003": f"nanobatch-{ours.tag}-j0003",
    }
    assert again.jobs[waiting].phase is Phase.PLANNED
    again.close()
    loaded = {j.job_id: j.display_name for j in BatchBook.load(original)}
    assert loaded == {j: f"nanobatch-{tag}-{j}" for j in (sent, waiting, "j0003")}


def test_a_book_from_before_folders_were_named_keeps_its_tag_where_it_is(tmp_path: Path) -> None:
    out = tmp_path / "out"
    job, tag = _folder_with_a_job(out)
    path = out / BATCH_DIR / BOOK_FILE
    first, *rest = path.read_bytes().splitlines(keepends=True)
    opening = decode_line(first)
    assert opening is not None
    del opening["folder"]  # an opening line as the versions before wrote it
    path.write_bytes(encode_line(opening) + b"".join(rest))

    again = BatchBook(out)
    again.open()
    assert again.tag == tag
    assert again.jobs[job].display_name == f"nanobatch-{tag}-{job}"
    again.close()
    shutil.copytree(out, tmp_path / "copy")  # named now: a copy made since is told apart
    copied = BatchBook(tmp_path / "copy")
    copied.open()
    assert copied.tag != tag
    copied.close()
