"""A job keeps the name Google knows it by across a copied folder's new tag, whichever line of
the book is damaged on disk (each test found by a review of 0bf20da, and failing there)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.commands.batchjobs import batch_cancel
from pipeline.emulator import parse_batch_faults
from pipeline.store.batchbook import BATCH_DIR, BOOK_FILE, BatchBook
from pipeline.store.bookjob import Phase
from pipeline.store.journal import decode_line
from tests.batch_wire_helpers import batch_config, prepared, wire
from tests.emulator.emulator_helpers import FLASH_31
from tests.test_batchbook import tagless_book

NOW = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)


def _plan(book: BatchBook, rows: list[str]) -> str:
    return book.plan(model=FLASH_31, request_file=f"{BATCH_DIR}/x.jsonl", size=123,
                     sha256="ab", rows=rows, reserved_usd=0.5,
                     at=NOW - timedelta(hours=2)).job_id  # fmt: skip


def _damage_line(out: Path, kind: str, job: str | None = None) -> None:
    """Flip a byte inside the first line of ``kind`` (of ``job``): its checksum fails."""
    path = out / BATCH_DIR / BOOK_FILE
    lines = path.read_bytes().splitlines(keepends=True)
    for i, line in enumerate(lines):
        record = decode_line(line)
        if record and record.get("kind") == kind and (job is None or record.get("job") == job):
            damaged = bytearray(line)
            damaged[20] ^= 0x01
            lines[i] = bytes(damaged)
            break
    else:
        raise AssertionError(f"no {kind} line")
    path.write_bytes(b"".join(lines))


def test_a_job_planned_before_a_new_tag_keeps_its_name_when_its_planned_line_is_lost(
    tmp_path: Path,
) -> None:
    """j0001 planned in ``out`` (tag A), the folder then copied (or restored, or moved to
    another disk: any new inode). The copy's run creates j0001 at Google under its name,
    nanobatch-A-j0001, but journals its later steps with the book's new tag B. With the one
    ``planned`` line damaged, the replay names j0001 from its next record: nanobatch-B-j0001,
    a name no job has at Google. A crash mid-create is then looked up under the wrong name
    (the job created again), and ``batch cancel`` does not find the running job."""
    out = tmp_path / "out"
    out.mkdir()
    book = BatchBook(out)
    book.open()
    job = _plan(book, ["r1"])
    book.record(job, Phase.UPLOAD_STARTED, session_url="http://session")  # at Google now
    name = book.jobs[job].display_name
    book.close()
    copy = tmp_path / "out2"
    shutil.copytree(out, copy)

    ours = BatchBook(copy)
    ours.open()
    assert ours.tag != book.tag  # the copy took a new tag
    assert ours.jobs[job].display_name == name  # and j0001 kept its name
    ours.record(job, Phase.UPLOADED, file_name="files/x")
    ours.record(job, Phase.CREATING)  # a crash here: created at Google as `name`
    ours.close()
    _damage_line(copy, "planned", job)

    again = BatchBook(copy)
    again.open()
    assert again.damaged == 1
    assert again.jobs[job].display_name == name
    again.close()
    assert [j.display_name for j in BatchBook.load(copy)] == [name]


async def test_batch_cancel_finds_a_job_planned_before_a_new_tag_whose_planned_line_is_lost(
    tmp_path: Path,
) -> None:
    """The same, as money: the job runs at Google under its name; ``batch cancel`` in the
    folder looks for it under the new tag, says it was never created, and it goes on billing
    (the next run then abandons its rows and plans them again: billed twice)."""
    out = tmp_path / "out"
    out.mkdir()
    book = BatchBook(out)
    book.open()
    job = _plan(book, ["a", "b"])
    book.record(job, Phase.UPLOAD_STARTED, session_url="http://session")  # at Google now
    name = book.jobs[job].display_name
    book.close()
    copy = tmp_path / "out2"
    shutil.copytree(out, copy)

    stuck = batch_config(batch_faults=parse_batch_faults("stuck=1"))
    async with wire(stuck) as (route, client, _):
        ours = BatchBook(copy)
        ours.open()
        ours.record(job, Phase.UPLOADED, file_name="files/x")
        ours.record(job, Phase.CREATING, at=NOW - timedelta(hours=1))
        lines = [route.request_line(key, prepared(f"a lamp {key}")) for key in ("a", "b")]
        made = await route.create_job(client, model=FLASH_31, display_name=name, inline=lines)
        ours.close()  # killed before `created` was journalled
        _damage_line(copy, "planned", job)
        done = await batch_cancel(copy, route, client, NOW)
        state = (await route.get_job(client, made.name)).state.value
    assert done.not_created == []
    assert done.cancelled == [made.name]
    assert state == "CANCELLED"


def test_a_copy_of_a_book_whose_first_line_is_damaged_still_takes_a_tag_of_its_own(
    tmp_path: Path,
) -> None:
    """The opening line is the only one that names the folder. Damaged (the tag survives in
    every record), the book reads as one from before folders were named, and each folder
    claims it as its own: the copy keeps the original's tag, and both plan j0002 under the
    same name at Google, the collision the change set out to prevent."""
    out = tmp_path / "out"
    out.mkdir()
    book = BatchBook(out)
    book.open()
    shared = _plan(book, ["r1"])
    tag = book.tag
    book.close()
    _damage_line(out, "opened")
    shutil.copytree(out, tmp_path / "out2")

    theirs, ours = BatchBook(out), BatchBook(tmp_path / "out2")
    theirs.open()
    ours.open()
    # j0001 has nothing at Google yet: each folder makes its own, under its own tag.
    assert theirs.jobs[shared].display_name != ours.jobs[shared].display_name
    assert _plan(theirs, ["r2"]) == _plan(ours, ["r3"]) == "j0002"
    assert theirs.jobs["j0002"].display_name != ours.jobs["j0002"].display_name
    assert tag in (theirs.tag, ours.tag)
    theirs.close()
    ours.close()


def test_a_book_from_before_tags_were_repeated_keeps_its_jobs_names_once_named_again(
    tmp_path: Path,
) -> None:
    """A book whose records carry no tag (the versions before it was repeated), j0001 being
    created. Opened by this version, it gets a second opening line (same tag, its folder).
    Then the first line is damaged: before 0bf20da the tag was lost and the run refused
    (``BookTagLost``); now the second opening gives the tag back, but j0001 was named during
    the replay before it was read: ``nanobatch--j0001``, a name Google never saw, so a crash
    mid-create is looked up in vain and the job created twice."""
    tagless_book(tmp_path)
    book = BatchBook(tmp_path)
    book.open()  # upgraded: names its folder
    assert book.jobs["j0001"].display_name == "nanobatch-0ld7a9ff-j0001"
    book.close()
    _damage_line(tmp_path, "opened")

    again = BatchBook(tmp_path)
    try:
        again.open()
    except Exception:  # refusing (BookTagLost) is safe too
        return
    assert again.jobs["j0001"].display_name == "nanobatch-0ld7a9ff-j0001"
    again.close()
