"""A row's images are written on the event loop while the disk keeps up and in a worker thread
when it does not (``store/placement.py``): after a slow write the loop waits on the disk for
at most one write in ``THREADED_AFTER_SLOW + 1``; a run's first write, a spooled image and
images held in memory beyond a size are written in a thread; and a write that fails on the loop
fails its row exactly as it does in a thread."""

from __future__ import annotations

import errno
import hashlib
import io
import threading
from pathlib import Path

import anyio
import anyio.to_thread
from PIL import Image

from pipeline.core.types import ImagePart, SpooledFile
from pipeline.store.diskspace import DiskGuard
from pipeline.store.placement import (
    INLINE_MAX_BYTES,
    INLINE_MAX_S,
    THREADED_AFTER_SLOW,
    Placement,
)
from pipeline.store.storage import IMAGES_DIR, StoredImage, store_images


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (12, 8), (9, 8, 7)).save(out, "PNG")
    return out.getvalue()


class Disk:
    """A writer that notes the thread each write ran on, on a disk whose writes take
    ``seconds`` by the placement's timer (real writes, to ``out``)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.seconds = 0.0
        self.threads: list[int] = []
        self.troubles: list[OSError] = []
        self.error: OSError | None = None

    def timer(self) -> float:
        return self.now

    def write(self, out: Path, stem: str, images: tuple[ImagePart, ...]) -> list[StoredImage]:
        self.threads.append(threading.get_ident())
        self.now += self.seconds
        if self.error is not None:
            raise self.error
        return store_images(out, stem, images)

    def guard(self, out: Path) -> DiskGuard:
        (out / IMAGES_DIR).mkdir()  # made when a run starts
        guard = DiskGuard(out, 0, self.troubles.append)
        guard.placement = Placement(self.timer)
        return guard


async def test_writes_run_on_the_event_loop_while_the_disk_keeps_up(tmp_path: Path) -> None:
    disk = Disk()
    guard = disk.guard(tmp_path)
    disk.seconds = INLINE_MAX_S / 2  # within the limit
    for i in range(5):
        stored = await guard.store(f"row{i}", (ImagePart(png(), "image/png"),), disk.write)
        assert isinstance(stored, list)
        assert (tmp_path / stored[0].rel_path).read_bytes() == png()
        assert (stored[0].width, stored[0].height) == (12, 8)
    # The run's first write opens the provenance journal (read whole): in a thread.
    assert disk.threads[0] != threading.get_ident()
    assert disk.threads[1:] == [threading.get_ident()] * 4
    assert guard.stored_bytes == 5 * len(png())


async def test_after_a_slow_write_the_next_ones_go_to_worker_threads(tmp_path: Path) -> None:
    disk = Disk()
    guard = disk.guard(tmp_path)
    loop = threading.get_ident()
    await guard.store("first", (ImagePart(png(), "image/png"),), disk.write)  # in a thread
    disk.seconds = INLINE_MAX_S * 3  # a slow disk: every write
    for i in range(2 * (THREADED_AFTER_SLOW + 1)):
        assert isinstance(
            await guard.store(f"r{i}", (ImagePart(png(), "image/png"),), disk.write), list
        )
    on_loop = [i for i, thread in enumerate(disk.threads[1:]) if thread == loop]
    # One write on the loop, then THREADED_AFTER_SLOW in threads, then the loop tries again.
    assert on_loop == [0, THREADED_AFTER_SLOW + 1]
    assert len(disk.threads) == 1 + 2 * (THREADED_AFTER_SLOW + 1)
    disk.seconds = 0.0  # the disk recovers: after the threads' turn, the loop writes again
    for i in range(THREADED_AFTER_SLOW + 3):
        await guard.store(f"s{i}", (ImagePart(png(), "image/png"),), disk.write)
    assert disk.threads[-2:] == [loop, loop]


async def test_a_spooled_image_is_moved_in_a_worker_thread(tmp_path: Path) -> None:
    disk = Disk()
    guard = disk.guard(tmp_path)
    (tmp_path / ".tmp").mkdir()
    spool = tmp_path / ".tmp" / "spool-1"
    data = png()
    spool.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    image = ImagePart(b"", "image/png", SpooledFile(str(spool), len(data), sha, data[:32]))
    stored = await guard.store("big", (image,), disk.write)
    assert isinstance(stored, list)
    assert (tmp_path / stored[0].rel_path).read_bytes() == data
    assert not spool.exists()
    assert disk.threads != [threading.get_ident()]


async def test_images_held_in_memory_beyond_the_limit_are_written_in_a_thread(
    tmp_path: Path,
) -> None:
    """A batch job's result or a downloaded link is in memory whatever its size: hashing and
    writing megabytes would stall the loop."""
    disk = Disk()
    guard = disk.guard(tmp_path)
    await guard.store("first", (ImagePart(png(), "image/png"),), disk.write)
    big = png() + bytes(INLINE_MAX_BYTES)  # a PNG with trailing bytes: kept as it came
    stored = await guard.store("big", (ImagePart(big, "image/png"),), disk.write)
    small = await guard.store("small", (ImagePart(png(), "image/png"),), disk.write)
    assert isinstance(stored, list)
    assert isinstance(small, list)
    assert (tmp_path / stored[0].rel_path).read_bytes() == big
    assert disk.threads[1] != threading.get_ident()
    assert disk.threads[2] == threading.get_ident()


async def test_a_write_that_fails_on_the_loop_fails_the_row_not_the_run(tmp_path: Path) -> None:
    disk = Disk()
    guard = disk.guard(tmp_path)
    await guard.store("first", (ImagePart(png(), "image/png"),), disk.write)  # in a thread
    disk.error = OSError(errno.EIO, "Input/output error")
    written = await guard.store("row", (ImagePart(png(), "image/png"),), disk.write)
    assert isinstance(written, OSError)
    assert written.errno == errno.EIO
    assert disk.troubles == [disk.error]  # the disk guard stops the run from feeding
    assert disk.threads[1:] == [threading.get_ident()]  # an I/O error is not tried again
    assert guard.stored_bytes == len(png())  # the first row's


async def test_writes_while_the_first_is_being_made_go_to_threads_too(tmp_path: Path) -> None:
    """The first write opens the provenance journal (read whole, under the lock every write
    takes): a second write arriving meanwhile would wait for it on the loop."""
    disk = Disk()
    guard = disk.guard(tmp_path)
    first_going, let_go = threading.Event(), threading.Event()
    real_write = disk.write

    def write(out: Path, stem: str, images: tuple[ImagePart, ...]) -> list[StoredImage]:
        if stem == "first":
            first_going.set()
            assert let_go.wait(10)
        return real_write(out, stem, images)

    async with anyio.create_task_group() as group:
        group.start_soon(guard.store, "first", (ImagePart(png(), "image/png"),), write)
        await anyio.to_thread.run_sync(first_going.wait)
        await guard.store("second", (ImagePart(png(), "image/png"),), write)
        let_go.set()
    await guard.store("third", (ImagePart(png(), "image/png"),), write)
    loop = threading.get_ident()
    assert [thread == loop for thread in disk.threads] == [False, False, True]
