"""The provenance lookup a resume makes for every pending row (``store/journalindex.py``): the
latest intact line for a key, found again after appends, a replaced file or a rewrite, and
without holding the folder's records in memory (a million rows took ~840 MB)."""

from __future__ import annotations

import errno
import io
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from pipeline.store import journalindex, provenance
from pipeline.store.journal import encode_line
from pipeline.store.journalindex import JournalIndex


def line(stem: str, n: int, **extra: Any) -> bytes:
    return encode_line({"stem": stem, "n": n, **extra})


def append(path: Path, *lines: bytes) -> None:
    with open(path, "ab") as f:
        f.write(b"".join(lines))


@pytest.fixture(params=["hash", "colliding"])
def index(request: pytest.FixtureRequest) -> JournalIndex:
    """The real index, and one where every key has the same hash (each line read back is
    checked for its key)."""
    return JournalIndex("stem") if request.param == "hash" else JournalIndex("stem", lambda _: 7)


def test_the_latest_intact_line_for_a_key_wins(tmp_path: Path, index: JournalIndex) -> None:
    path = tmp_path / "j"
    damaged = bytearray(line("a", 3))
    damaged[-3] ^= 1  # a flipped bit: the line fails its checksum
    append(path, line("a", 1), line("b", 1), line("a", 2), bytes(damaged), line("c", 1))
    assert index.get(path, "a") == {"stem": "a", "n": 2}
    assert index.get(path, "b") == {"stem": "b", "n": 1}
    assert index.get(path, "missing") is None
    # What ``accept`` refuses does not hide the key's earlier line.
    assert index.get(path, "a", lambda record: record["n"] < 2) == {"stem": "a", "n": 1}


def test_lines_appended_after_a_lookup_are_found(
    tmp_path: Path, index: JournalIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journalindex, "_MERGE_AFTER", 3)  # sorted in after a few
    path = tmp_path / "j"
    append(path, line("a", 1))
    assert index.get(path, "a") == {"stem": "a", "n": 1}
    for n in range(2, 12):
        append(path, line("a", n), line(f"k{n}", n))
        assert index.get(path, "a") == {"stem": "a", "n": n}
        assert index.get(path, f"k{n - 1}") == (
            {"stem": f"k{n - 1}", "n": n - 1} if n > 2 else None
        )
    append(path, b"0000 torn, no newline")  # a torn tail is not a line
    assert index.get(path, "k11") == {"stem": "k11", "n": 11}


def test_a_replaced_or_rewritten_journal_is_read_again(tmp_path: Path, index: JournalIndex) -> None:
    path = tmp_path / "j"
    append(path, line("a", 1), line("b", 1))
    assert index.get(path, "b") == {"stem": "b", "n": 1}
    path.write_bytes(line("a", 5) + line("c", 1))  # rewritten in place, longer
    assert index.get(path, "b") is None
    assert index.get(path, "a") == {"stem": "a", "n": 5}
    other = tmp_path / "k"
    other.write_bytes(line("a", 9))
    other.replace(path)  # another file under the name
    assert index.get(path, "a") == {"stem": "a", "n": 9}
    assert index.get(path, "c") is None


def record(i: int) -> dict[str, Any]:
    """A provenance line as a run writes it."""
    stem = f"sku-{i:06d}"
    return {"stem": stem, "row_id": stem, "fingerprint": f"{i:064x}", "cost_usd": 0.039,
            "files": [[f"images/{stem}.png", f"{i * 7:064x}"]], "tier": "standard",
            "at": 1.7e9 + i}  # fmt: skip


def test_a_resume_keeps_no_record_of_the_folder_in_memory(tmp_path: Path) -> None:
    """Looking a pending row up in a folder of 20,000 records keeps ~16 bytes a line, not the
    records (the code before kept ~17 MB here)."""
    rows = 20_000
    journal = tmp_path / provenance.JOURNAL_FILE
    journal.write_bytes(b"".join(encode_line(record(i)) for i in range(rows)))
    provenance.read(tmp_path, "warm")  # pyarrow's imports, outside the count
    other = tmp_path / "other"
    other.mkdir()
    append(other / provenance.JOURNAL_FILE, line("x", 1))
    provenance.read(other, "x")  # the index now holds another folder: tmp_path's is read again
    tracemalloc.start()
    try:
        found = provenance.read(tmp_path, "sku-001234")
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert found is not None
    assert found.fingerprint == f"{1234:064x}"
    assert found.cost_usd == 0.039
    assert provenance.read(tmp_path, "sku-999999") is None
    assert held < 40 * rows, held  # bytes still held (the code before: 15.5 MB)


def test_a_latest_line_unreadable_at_lookup_revives_no_older_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index reads a row's lines back at lookup. When its latest line cannot be read (EIO
    on a failing disk), an older line must not stand in for it: here the latest is a ``verify
    --fix`` reject, and the older record would have its broken image adopted (found by a
    review of f85033c)."""
    files = (("images/a.png", "d" * 64),)
    good = encode_line(provenance._line("a", provenance.Provenance("a", "fp-old", files)))
    rejected = encode_line(provenance._line("a", provenance.Provenance("a", None, files)))
    (tmp_path / provenance.JOURNAL_FILE).write_bytes(good + rejected + line("b", 1))
    assert provenance.read(tmp_path, "a") == provenance.Provenance("a", None, files)

    class Failing(io.BytesIO):
        """The journal, whose rejected line cannot be read back."""

        def readline(self, size: int | None = -1) -> bytes:
            if self.tell() == len(good):
                raise OSError(errno.EIO, "Input/output error")
            return super().readline(size)

    monkeypatch.setattr(journalindex, "open", lambda path, mode: Failing(Path(path).read_bytes()),
                        raising=False)  # fmt: skip
    assert provenance.read(tmp_path, "a") is None


@pytest.mark.parametrize(
    "stem", ['cat/"quoted"', "back\\slash", "caf\u00e9 \u732b", "tab\there", "plain"]
)
def test_keys_are_found_whatever_their_characters(
    tmp_path: Path, index: JournalIndex, stem: str
) -> None:
    """A key is read from the line's start while the index is built; one with characters the
    encoder escapes (quotes, backslashes, control characters) from the line decoded whole."""
    path = tmp_path / "j"
    append(path, line(stem, 1), line("other", 1), line(stem, 2))
    assert index.get(path, stem) == {"stem": stem, "n": 2}
    assert index.get(path, stem + "x") is None


def test_a_damaged_line_that_still_names_its_key_does_not_hide_the_older_one(
    tmp_path: Path, index: JournalIndex
) -> None:
    """The index takes a line's key without its checksum; the lookup checks it and passes a
    damaged line over, as if it had never been indexed."""
    path = tmp_path / "j"
    damaged = bytearray(line("a", 2, files=["images/a.png"]))
    damaged[-5] ^= 1  # in the record's body: its key still reads "a"
    torn_key = bytearray(line("a", 3))
    torn_key[len(b'00000000 {"stem":"')] = 0xFF  # the key's own bytes: not even UTF-8
    append(path, line("a", 1), bytes(damaged), bytes(torn_key))
    assert index.get(path, "a") == {"stem": "a", "n": 1}
