"""Keep test output readable: the library logs at debug, tests show warnings and up.

Bytecode: this machine sets PYTHONDONTWRITEBYTECODE, so every test process compiled its whole
import tree from source (pyarrow, httpx, typer, pydantic, ...: about 6 CPU-seconds per
worker before the first test), and so did every ``nanobatch`` started as a process (about
half its CPU). Tests and their children instead share one bytecode cache in the user's cache
folder, kept between sessions (Python checks each file against its source, so a stale entry
is recompiled, never used); nothing is written next to the sources. The environment says so
as this file is imported, before pytest-xdist starts its workers, so the workers load pytest
and its plugins from the cache too, not only what they import after this file.

Temporary folders: a run fsyncs every image, journal group and folder, and on this machine's
virtual disk each fsync waits for the device (a fifth of the suite's system time, and real
waiting on top). Where the machine has a roomy memory-backed ``/dev/shm``, the tests' temporary
folders live there instead: fsync returns at once, and what the tests assert (rows, files,
counters, what survives a SIGKILL, which keeps the page cache) is the same. An explicit
``TMPDIR`` wins; a small ``/dev/shm`` (Docker's 64 MB) is not used.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

# Before the imports below and the test modules': these are what the cache saves.
PYCACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nanobatch-pycache"
sys.pycache_prefix = str(PYCACHE)
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
os.environ["PYTHONPYCACHEPREFIX"] = str(PYCACHE)

MEMORY_TMP = Path("/dev/shm")
MEMORY_TMP_FREE = 2 << 30  # a whole run's folders take a few hundred MB; pytest keeps three


def _temporary_folders_in_memory() -> None:
    if os.environ.get("TMPDIR") or not os.access(MEMORY_TMP, os.W_OK | os.X_OK):
        return
    disk = os.statvfs(MEMORY_TMP)
    if disk.f_bavail * disk.f_frsize >= MEMORY_TMP_FREE:
        os.environ["TMPDIR"] = str(MEMORY_TMP)
        tempfile.tempdir = None  # gettempdir() reads TMPDIR again


_temporary_folders_in_memory()

import asyncio  # noqa: E402
import logging  # noqa: E402
from collections.abc import Callable, Mapping  # noqa: E402

import pytest  # noqa: E402
import structlog  # noqa: E402

from pipeline.core.clock import VirtualClock  # noqa: E402

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


# The files with the longest single tests (real processes, kills, signals, big runs), longest
# first (measured with --durations). pytest-xdist's worksteal gives each worker a contiguous
# share of the collection and an idle worker steals from the end of another's queue: these
# start at once, and what is left for the end are short tests either worker can take.
SLOW_FIRST = (
    "test_kill.py",
    "test_batch_kill.py",
    "test_report.py",
    "test_pipeline.py",
    "test_batch_signal.py",
    "test_budget.py",
    "test_stop.py",
    "test_batch_run.py",
    "test_redaction.py",
    "test_status.py",
    "test_batch_fold_kill.py",
    "test_tier_runs.py",
    "test_recovery.py",
    "test_emulator_routes_cli.py",
    "test_vertex_run.py",
    "test_startup.py",
)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After a passing run, free the memory its temporary folders hold in ``/dev/shm`` (pytest
    would keep the last three runs' folders, ~1 GB, until the machine restarts). Under
    pytest-xdist the workers' folders live in the controller's, so the controller removes it;
    a failing run's folders are kept for a look."""
    if exitstatus != 0 or hasattr(session.config, "workerinput"):
        return
    factory = getattr(session.config, "_tmp_path_factory", None)
    basetemp = getattr(factory, "_basetemp", None)
    if isinstance(basetemp, Path) and basetemp.is_relative_to(MEMORY_TMP):
        shutil.rmtree(basetemp, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return SLOW_FIRST.index(name) if name in SLOW_FIRST else len(SLOW_FIRST)

    items.sort(key=rank)  # stable: each file's tests keep their order and stay together


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """A test that asks for ``clock`` runs on a virtual clock's loop, every other on asyncio's."""
    if "clock" in getattr(item, "fixturenames", ()):
        return {"virtual": lambda: VirtualClock().new_loop()}
    return {"asyncio": asyncio.new_event_loop}


@pytest.fixture
async def clock() -> VirtualClock:
    """The virtual clock this test runs on: its sleeps, timeouts and deadlines take no real
    time (share it with the in-process emulator: ``EmulatorConfig(clock=clock.monotonic)``)."""
    return await VirtualClock.current()
