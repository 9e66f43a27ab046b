"""Ending the process once a command has ended, without the interpreter's teardown.

After a command, CPython waits for its non-daemon threads, runs the ``atexit`` handlers, flushes
standard output and error, then finalises every module and collects what they held. A run has
loaded ~700 modules (pyarrow, aiohttp, httpx, structlog, typer), and that last part took
0.09-0.19 s after every command here, in which nothing is written: the run's files are durable
and closed before its command returns (docs/benchmarks.md, "exit"). ``leave`` does the first
three, as CPython does them, and then ends the process.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from typing import NoReturn

_FLUSH_FAILED = 120  # CPython's status when it cannot flush standard output at exit


def leave(code: object) -> NoReturn:
    """End the process with ``code`` as ``SystemExit(code)`` would, minus the teardown."""
    status = _status(code)
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon:
            thread.join()  # as CPython waits for them before it exits
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (``| head``), a terminal gone
            status = status or _FLUSH_FAILED
    os._exit(status)


def _status(code: object) -> int:
    """The exit status ``SystemExit(code)`` gives: None is 0, an int itself, anything else is
    printed to standard error and gives 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    with contextlib.suppress(OSError, ValueError):
        print(code, file=sys.stderr)
    return 1
