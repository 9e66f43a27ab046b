"""The ledger writer's group commits: paced under load, at once when the run is quiet or when
someone waits for them, and never dropped by a cancellation."""

from __future__ import annotations

import errno
import itertools
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from anyio.streams.memory import MemoryObjectSendStream

from pipeline.core.clock import VirtualClock
from pipeline.run import writer
from pipeline.run.executor import Durable, Record, RunServices
from pipeline.store.ledger import AttemptRecord, Ledger, LedgerRecord
from tests.helpers import emulator, run, run_config, write_csv


class Counted(Ledger):
    """A ledger that notes each group commit: its rows and the clock's time."""

    def __init__(self, out_dir: Path, clock: VirtualClock) -> None:
        super().__init__(out_dir)
        self.clock = clock
        self.groups: list[tuple[float, list[str]]] = []

    def append(
        self, records: Sequence[LedgerRecord], attempts: Sequence[AttemptRecord] = ()
    ) -> None:
        super().append(records, attempts)
        self.groups.append((self.clock.monotonic(), [r.row_id for r in records]))


def record(row_id: str) -> LedgerRecord:
    return LedgerRecord(row_id, 1, "succeeded", "", "m", "p", finished_at=datetime.now(UTC))


Feed = Callable[[MemoryObjectSendStream[Record]], Awaitable[None]]


async def writing(
    tmp_path: Path,
    clock: VirtualClock,
    feed: Feed,
    *,
    cancel: bool = False,
    disk: type[Counted] = Counted,
) -> tuple[Counted, RunServices]:
    """Run the writer over what ``feed(send)`` sends, to the end of the stream (``cancel``:
    the writer's task group cancelled once ``feed`` returns), into a ``disk`` ledger."""
    services = RunServices(run_config(tmp_path / "m.csv", tmp_path, clock=clock))
    ledger = disk(tmp_path, clock)
    ledger.open()
    send, receive = anyio.create_memory_object_stream[Record](256)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.write, services, ledger, receive)
            async with send:
                await feed(send)
                if cancel:
                    tg.cancel_scope.cancel()
    finally:
        ledger.close()
    return ledger, services


async def test_records_arriving_under_load_share_paced_commits(
    tmp_path: Path, clock: VirtualClock
) -> None:
    async def feed(send: MemoryObjectSendStream[Record]) -> None:
        for n in range(40):  # 200 rows a second for 0.2 s
            await send.send(record(f"r{n}"))
            await clock.sleep(0.005)

    ledger, services = await writing(tmp_path, clock, feed)

    rows = [row for _, group in ledger.groups for row in group]
    assert rows == [f"r{n}" for n in range(40)]  # every record, in order, once
    assert services.result.by_status["succeeded"] == 40
    # One commit per PACE_S at most (the first at once), not one per record.
    assert len(ledger.groups) <= 0.2 / writer.PACE_S + 2
    times = [t for t, _ in ledger.groups]
    assert all(b - a >= writer.PACE_S - 1e-9 for a, b in itertools.pairwise(times))


async def test_a_quiet_run_commits_each_record_at_once(tmp_path: Path, clock: VirtualClock) -> None:
    sent: list[float] = []

    async def feed(send: MemoryObjectSendStream[Record]) -> None:
        for n in range(5):  # a row every 100 ms: the API's real pace, and then some
            sent.append(clock.monotonic())
            await send.send(record(f"r{n}"))
            await clock.sleep(0.1)

    ledger, _ = await writing(tmp_path, clock, feed)

    assert [group for _, group in ledger.groups] == [[f"r{n}"] for n in range(5)]
    assert [t for t, _ in ledger.groups] == sent  # no record waited


async def test_a_durable_mark_is_not_paced(tmp_path: Path, clock: VirtualClock) -> None:
    waited: list[float] = []

    async def feed(send: MemoryObjectSendStream[Record]) -> None:
        await send.send(record("first"))
        await clock.sleep(0.001)  # committed: the next group would wait for the pace
        mark = Durable()
        started = clock.monotonic()
        send.send_nowait(record("second"))
        send.send_nowait(mark)
        await mark.written.wait()
        waited.append(clock.monotonic() - started)
        assert mark.ok

    ledger, _ = await writing(tmp_path, clock, feed)

    assert [group for _, group in ledger.groups] == [["first"], ["second"]]
    assert waited == [0.0]


async def test_a_group_waiting_for_its_pace_is_committed_when_the_run_is_cancelled(
    tmp_path: Path, clock: VirtualClock
) -> None:
    async def feed(send: MemoryObjectSendStream[Record]) -> None:
        await send.send(record("first"))
        await clock.sleep(0.001)
        await send.send(record("second"))  # waits for the pace
        await anyio.lowlevel.checkpoint()

    ledger, _ = await writing(tmp_path, clock, feed, cancel=True)

    assert [group for _, group in ledger.groups] == [["first"], ["second"]]


class Refusing(Counted):
    """A ledger whose disk refuses its first group, even with the reserve freed."""

    def __init__(self, out_dir: Path, clock: VirtualClock) -> None:
        super().__init__(out_dir, clock)
        self.refusals = 2  # DiskGuard tries twice

    def append(
        self, records: Sequence[LedgerRecord], attempts: Sequence[AttemptRecord] = ()
    ) -> None:
        if self.refusals:
            self.refusals -= 1
            raise OSError(errno.ENOSPC, "No space left on device")
        super().append(records, attempts)


async def test_a_durable_mark_after_records_the_disk_refused_is_not_ok(
    tmp_path: Path, clock: VirtualClock
) -> None:
    """A mark vouches for every record sent before it: one the disk refused in an earlier
    group too (a fold's last record committed alone, the mark then in a group of its own)."""
    marks: list[bool] = []

    async def feed(send: MemoryObjectSendStream[Record]) -> None:
        await send.send(record("refused"))
        await clock.sleep(0.001)  # its group was refused before the mark is sent
        mark = Durable()
        await send.send(mark)
        await mark.written.wait()
        marks.append(mark.ok)

    _, services = await writing(tmp_path, clock, feed, disk=Refusing)

    assert services.result.unrecorded == 1
    assert marks == [False]


@pytest.mark.parametrize("concurrency", [1, 16, 64])
async def test_a_flood_of_records_moves_at_least_a_full_group_per_pace(
    tmp_path: Path, clock: VirtualClock, concurrency: int
) -> None:
    """Invalid rows go to the writer as fast as the plan yields them. While the writer waits
    for its pace they fill the stream and the producer waits: a stream holding fewer than a
    full group (4 records per request slot, below 16 slots) held a flood to one small group
    per pace (2,000 invalid rows at --concurrency 1: 5 s of waiting), and one holding a full
    group to a few (0.45 s). The stream has room for more than a planner's batch of rows:
    only the pace after each batch is left."""
    rows = 2000
    manifest = write_csv(tmp_path / "m.csv", [
        {"id": f"r{n}", "prompt": "x", "aspect_ratio": "5:3"} for n in range(rows)
    ])  # fmt: skip
    config = run_config(manifest, tmp_path / "out", clock=clock, concurrency=concurrency)

    result = await run(config, emulator(clock=clock))

    assert result.by_status["invalid"] == rows
    assert result.duration_s <= 4 * writer.PACE_S
