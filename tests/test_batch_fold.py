"""Folding a job's results from a local file: lines joined on key in any order, refusals
recorded as online, unreadable lines and unknown keys kept for inspection, rows without a
line failed with a reason (SUCCEEDED job) or handed back unfinished (a job that failed)."""

from __future__ import annotations

from pathlib import Path

import anyio

from pipeline.core.config import ApiKey, RunMode
from pipeline.core.types import Job
from pipeline.providers.auth import ApiKeyAuth
from pipeline.providers.batchapi import BatchRoute
from pipeline.providers.gemini.provider import GeminiProvider
from pipeline.run.batch.calls import Calls
from pipeline.run.batch.feed import Rows
from pipeline.run.batch.fold import MISSING, Folder
from pipeline.run.batch.requestfile import RequestFile, RowEntry, bad_lines_path, results_path
from pipeline.run.executor import Record, RunServices
from pipeline.store.batchbook import BatchBook
from pipeline.store.bookjob import Phase
from pipeline.store.ledger import AttemptRecord, Ledger, LedgerRecord
from tests.helpers import TEST_KEY, run_config

MODEL = "gemini-3.1-flash-image-preview"
REFUSED = b'{"response": {"promptFeedback": {"blockReason": "SAFETY"}}, "key": "a"}\n'


def route() -> BatchRoute:
    provider = GeminiProvider(
        base_url="http://emulator.invalid", auth=ApiKeyAuth(ApiKey(TEST_KEY, "test"))
    )
    found: BatchRoute = provider.batch_route()
    return found


def book_with_job(out: Path, state: str, results: bytes) -> BatchBook:
    requests = RequestFile(out, "j0001", MODEL)
    for row_id in ("a", "b"):
        job = Job(row_id, 1, "a lamp", (), MODEL, None, None)
        requests.add(RowEntry(job, "fp", "1K"), b"{}\n", 1, 0.0)
    requests.close()
    (out / results_path("j0001")).write_bytes(results)
    book = BatchBook(out)
    book.open()
    book.plan(job_id="j0001", model=MODEL, request_file="x", size=6, sha256="",
              rows=["a", "b"], reserved_usd=0.0)  # fmt: skip
    book.record("j0001", Phase.CREATED, batch_name="batches/x")
    book.record("j0001", Phase.ENDED, state=state)
    book.record("j0001", Phase.DOWNLOADED, path=results_path("j0001"), bytes=len(results))
    return book


async def fold(out: Path, book: BatchBook) -> tuple[list[Record], int, list[str]]:
    services = RunServices(run_config(out / "m.csv", out, mode=RunMode.BATCH))
    send, receive = anyio.create_memory_object_stream[Record](100)
    folder = Folder(services, route(), client=None, book=book, calls=Calls(services),  # type: ignore[arg-type]
                    records=send)  # fmt: skip
    folded = await folder.fold(book.jobs["j0001"], lambda _row: True)
    send.close()
    records = [r async for r in receive]
    return records, folded.bad_lines, [e.job.row_id for e, _ in folded.unfinished]


async def test_bad_lines_are_kept_and_rows_without_a_line_fail_with_a_reason(
    tmp_path: Path,
) -> None:
    results = b'not json\n{"key": "zzz", "response": {}}\n' + REFUSED
    book = book_with_job(tmp_path, "SUCCEEDED", results)

    records, bad, unfinished = await fold(tmp_path, book)

    rows = {r.row_id: r for r in records if isinstance(r, LedgerRecord)}
    assert (rows["a"].status, rows["a"].tier, rows["a"].batch_job) == (
        "refused",
        "batch",
        "batches/x",
    )
    assert (rows["b"].status, rows["b"].reason) == ("failed", MISSING)
    assert bad == 2
    assert unfinished == []
    kept = (tmp_path / bad_lines_path("j0001")).read_bytes()
    assert kept == b'not json\n{"key": "zzz", "response": {}}\n'


async def test_rows_a_failed_job_did_not_answer_come_back_unfinished(tmp_path: Path) -> None:
    book = book_with_job(tmp_path, "FAILED", b"")

    records, bad, unfinished = await fold(tmp_path, book)

    assert records == []
    assert (bad, unfinished) == (0, ["a", "b"])


def test_a_job_whose_planned_record_was_damaged_still_holds_its_rows(tmp_path: Path) -> None:
    book = book_with_job(tmp_path, "SUCCEEDED", REFUSED)
    book.close()
    path = tmp_path / ".batch" / "book.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"a"', b'"c"')  # the planned line: a flipped byte
    path.write_bytes(b"".join(lines))
    damaged = BatchBook(tmp_path)
    damaged.replay()
    assert damaged.jobs["j0001"].incomplete

    rows = Rows(damaged)

    assert rows.owner == {"a": "j0001", "b": "j0001"}


async def test_a_fold_a_kill_cut_short_records_no_attempt_twice(tmp_path: Path) -> None:
    # The killed fold made "a"'s attempt durable, not its ledger record: folding the job
    # again records "a" without a second attempt (the spend would count it twice).
    book = book_with_job(tmp_path, "SUCCEEDED", REFUSED)
    job = book.jobs["j0001"]
    assert job.created_at is not None
    ledger = Ledger(tmp_path)
    ledger.open()
    ledger.append([], [AttemptRecord(row_id="a", attempt=1, started_at=job.created_at,
                                     finished_at=job.created_at, latency_ms=0.0,
                                     http_status=200, outcome="refusal", reason="SAFETY",
                                     wait_s=0.0, possibly_billed=True, cost_usd=0.01,
                                     tier="batch")])  # fmt: skip
    ledger.close()

    records, _, _ = await fold(tmp_path, book)

    rows = [r for r in records if isinstance(r, LedgerRecord | AttemptRecord)]
    assert [(type(r).__name__, r.row_id) for r in rows if r.row_id == "a"] == [
        ("LedgerRecord", "a")
    ]
    assert [r.row_id for r in records if isinstance(r, AttemptRecord)] == ["b"]
