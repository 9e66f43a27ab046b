"""Keep test output readable: the library logs at debug, tests show warnings and up.

Many tests start ``nanobatch`` as a real process (signals, SIGKILL, exit codes). With
PYTHONDONTWRITEBYTECODE set, every such start recompiled the whole import tree from source
(about half its CPU time); children instead share one bytecode cache under the session's
temp dir, so only the first start of each worker compiles.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping

import pytest
import structlog

from pipeline.core.clock import VirtualClock

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


@pytest.fixture(scope="session", autouse=True)
def _bytecode_cache_for_subprocesses(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
        patch.setenv("PYTHONPYCACHEPREFIX", str(tmp_path_factory.mktemp("pycache")))
        yield


# The files whose tests wait longest (real processes, kills, deadlines, a browser), longest
# first: xdist hands out tests in collection order, so starting these first keeps one worker
# from running them alone at the end while the other sits idle.
SLOW_FIRST = (
    "test_kill.py",
    "test_report.py",
    "test_redaction.py",
    "test_stop.py",
    "test_pipeline.py",
    "test_status.py",
    "test_continue.py",
    "test_budget.py",
)


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
