"""Run the ``nanobatch`` command for a test in this process.

``nanobatch`` parses the real argv through the real Typer app and gives back the exit code,
stdout and stderr, like ``subprocess.run`` would, without a process start (a run's imports
alone cost about 0.6 CPU-seconds; process starts were the largest part of the suite's time).
Tests whose subject is the process itself (signals, SIGKILL, start-up imports, what a shell
script sees) still start ``python -m pipeline``.

In this process, what a command changes for the rest of the process is put back afterwards:
structlog's configuration (and its ``run.log`` file closed), the signal handlers a run
installs, ``sys.argv`` (which a run quotes in its "To continue" line), the working directory.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import structlog
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.core.logs import TERMINAL, JsonFile

KEY_VARIABLES = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass(frozen=True)
class Ran:
    """What a finished command left: the same fields as ``subprocess.CompletedProcess``."""

    returncode: int
    stdout: str
    stderr: str


def _env(key: str | None, env: Mapping[str, str | None]) -> dict[str, str | None]:
    """The changes to this process's environment: no key variable but ``key`` (as
    GEMINI_API_KEY), then ``env`` (None removes a variable)."""
    changes: dict[str, str | None] = dict.fromkeys(KEY_VARIABLES)
    if key is not None:
        changes["GEMINI_API_KEY"] = key
    changes.update(env)
    return changes


@contextmanager
def _restored(args: tuple[str, ...], cwd: Path | None) -> Iterator[None]:
    logging = structlog.get_config()
    handlers = {s: signal.getsignal(s) for s in _SIGNALS}
    argv, here = sys.argv, os.getcwd()
    sys.argv = ["nanobatch", *args]
    if cwd is not None:
        os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(here)
        sys.argv = argv
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        for processor in structlog.get_config()["processors"]:
            if isinstance(processor, JsonFile):
                processor.stream.close()
        structlog.configure(**logging)


def nanobatch(
    *args: str,
    key: str | None = None,
    env: Mapping[str, str | None] = {},
    cwd: Path | None = None,
) -> Ran:
    """Run ``nanobatch *args`` in this process. A bug in the command raises here, as it would
    end a process with a traceback."""
    with _restored(args, cwd):
        result = CliRunner().invoke(
            app, list(args), env=_env(key, env), prog_name="nanobatch", catch_exceptions=False
        )
    # A console that failed would have pointed this process's stdout at /dev/null.
    assert not TERMINAL.gone
    return Ran(result.exit_code, result.stdout, result.stderr)
