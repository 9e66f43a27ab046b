"""Keep test output readable: the library logs at debug, tests show warnings and up.

Many tests start ``nanobatch`` as a real process (signals, SIGKILL, exit codes). With
PYTHONDONTWRITEBYTECODE set, every such start recompiled the whole import tree from source
(about half its CPU time); children instead share one bytecode cache under the session's
temp dir, so only the first start of each worker compiles.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


@pytest.fixture(scope="session", autouse=True)
def _bytecode_cache_for_subprocesses(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
        patch.setenv("PYTHONPYCACHEPREFIX", str(tmp_path_factory.mktemp("pycache")))
        yield
