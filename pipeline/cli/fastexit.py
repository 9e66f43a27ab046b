"""Ending the process once a command has ended, without the interpreter's teardown.

After a command, CPython waits for its non-daemon threads, runs the ``atexit`` handlers, flushes
standard output and error, then finalises every module and collects what they held. A run has
loaded ~700 modules (pyarrow, aiohttp, httpx, structlog, typer), and that last part took
0.09-0.19 s after every command here, in which nothing is written: the run's files are durable
and closed before its command returns (docs/benchmarks.md, "exit"). ``leave`` does the first
three, as CPython does them, and then ends the process. Under a profiler or a coverage tracer
it lets the interpreter exit as usual: they write their results as it does.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from typing import NoReturn

_FLUSH_FAILED = 120  # CPython's status when it cannot flush standard output or error at exit


def leave(code: object) -> NoReturn:
    """End the process with ``code`` as ``SystemExit(code)`` would, minus the teardown."""
    if sys.getprofile() is not None or sys.gettrace() is not None or "coverage" in sys.modules:
        raise SystemExit(code)  # cProfile's and coverage's results are saved on the way out
    status = _status(code)
    _wait_for_threads()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        if stream is None or stream.closed:  # as CPython, which skips them too
            continue
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (``| head``), a terminal gone
            status = _FLUSH_FAILED
    os._exit(status)


def _wait_for_threads() -> None:
    """What CPython does first at exit: idle ``concurrent.futures`` workers are told to stop,
    then every non-daemon thread is waited for."""
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
        return
    current = threading.current_thread()
    for thread in threading.enumerate():  # an interpreter without the private hook
        if thread is not current and not thread.daemon:
            thread.join()


def _status(code: object) -> int:
    """The exit status ``SystemExit(code)`` gives: None is 0, an int itself, anything else is
    printed to standard error and gives 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    if sys.stderr is not None:
        with contextlib.suppress(OSError, ValueError):
            print(code, file=sys.stderr)
    return 1
