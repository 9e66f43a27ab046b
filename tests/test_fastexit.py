"""``cli.fastexit``: the process ends without the interpreter's teardown, but with everything
CPython does before it: non-daemon threads waited for, ``atexit`` handlers run, standard output
and error flushed, the exit status ``SystemExit`` would give."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Buffered standard output, as a user's shell gives it: the test environment may unbuffer it.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"} | {"GEMINI_API_KEY": "k"}


def _leave(tmp_path: Path, body: str) -> subprocess.CompletedProcess[bytes]:
    script = tmp_path / "script.py"
    script.write_text(
        "from pipeline.cli import fastexit\n" + textwrap.dedent(body), encoding="utf-8"
    )
    return subprocess.run(  # noqa: PLW1510 (the status is what is tested)
        [sys.executable, str(script)],
        capture_output=True,
        timeout=60,
        env=ENV,
        cwd=Path(__file__).parent.parent,
    )


def test_buffered_output_threads_and_exit_handlers_all_finish_first(tmp_path: Path) -> None:
    done = tmp_path / "done"
    handled = tmp_path / "handled"
    result = _leave(
        tmp_path,
        f"""
        import atexit, pathlib, sys, threading, time

        def late() -> None:
            time.sleep(0.2)
            pathlib.Path({str(done)!r}).write_text("written")

        threading.Thread(target=late).start()
        atexit.register(lambda: pathlib.Path({str(handled)!r}).write_text("ran"))
        sys.stdout.write("x" * 1_000_000)  # buffered: only a flush sends it down the pipe
        sys.stderr.write("to the end")
        fastexit.leave(None)
        """,
    )
    assert result.returncode == 0
    assert result.stdout == b"x" * 1_000_000
    assert result.stderr.endswith(b"to the end")
    assert done.read_text() == "written"
    assert handled.read_text() == "ran"


@pytest.mark.parametrize(
    ("code", "status", "stderr"),
    [
        ("0", 0, b""),
        ("3", 3, b""),
        ("True", 1, b""),
        ("-1", 255, b""),
        ("'no such manifest'", 1, b"no such manifest\n"),
    ],
)
def test_the_status_is_the_one_system_exit_gives(
    tmp_path: Path, code: str, status: int, stderr: bytes
) -> None:
    result = _leave(tmp_path, f"fastexit.leave({code})\n")
    assert result.returncode == status
    assert result.stderr == stderr


@pytest.mark.parametrize("code", ["0", "3"])
def test_output_that_cannot_be_flushed_fails_the_exit_as_cpython_does(
    tmp_path: Path, code: str
) -> None:
    result = _leave(
        tmp_path,
        f"""
        import os, sys
        sys.stdout.write("lost")
        os.close(sys.stdout.fileno())
        fastexit.leave({code})
        """,
    )
    assert result.returncode == 120


def test_streams_closed_or_absent_are_skipped_as_cpython_skips_them(tmp_path: Path) -> None:
    closed = _leave(tmp_path, "import sys\nsys.stdout.close()\nfastexit.leave(0)\n")
    assert closed.returncode == 0
    root = Path(__file__).parent.parent
    for fd in (1, 2):  # started with no standard output, or no standard error (``>&-``)
        helped = subprocess.run(  # noqa: PLW1510 (the status is what is tested)
            [sys.executable, "-m", "pipeline", "--help"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL if fd == 2 else None,
            stderr=subprocess.DEVNULL if fd == 1 else None,
            preexec_fn=lambda fd=fd: os.close(fd),
            timeout=60,
            env=ENV,
            cwd=root,
        )
        assert helped.returncode == 0


def test_idle_executor_workers_do_not_hold_the_exit(tmp_path: Path) -> None:
    """CPython tells idle ``concurrent.futures`` workers to stop before it waits for threads."""
    result = _leave(
        tmp_path,
        """
        from concurrent.futures import ThreadPoolExecutor
        ThreadPoolExecutor(2).submit(print, "done")
        fastexit.leave(0)
        """,
    )
    assert result.returncode == 0
    assert result.stdout == b"done\n"


def test_a_profiler_still_gets_its_results(tmp_path: Path) -> None:
    """Under cProfile (or a coverage tracer) the interpreter exits as usual, so they save."""
    profile = tmp_path / "p.prof"
    result = subprocess.run(  # noqa: PLW1510 (the status is what is tested)
        [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "pipeline", "--help"],
        capture_output=True,
        timeout=60,
        env=ENV,
        cwd=Path(__file__).parent.parent,
    )
    assert result.returncode == 0
    assert profile.stat().st_size > 0


def test_the_command_ends_with_its_status_and_its_whole_output(tmp_path: Path) -> None:
    """``python -m pipeline``: a usage error is still exit 2 with its message; help is whole."""
    root = Path(__file__).parent.parent
    helped = subprocess.run(  # noqa: PLW1510 (the status is what is tested)
        [sys.executable, "-m", "pipeline", "run", "--help"],
        capture_output=True,
        timeout=60,
        env=ENV,
        cwd=root,
    )
    assert helped.returncode == 0
    assert b"--concurrency" in helped.stdout
    assert helped.stdout.rstrip().endswith(b"Show this message and exit.")  # whole
    wrong = subprocess.run(  # noqa: PLW1510 (the status is what is tested)
        [sys.executable, "-m", "pipeline", "run", str(tmp_path / "missing.csv"), "--out",
         str(tmp_path / "out")],
        capture_output=True, timeout=60, cwd=root, env=ENV,
    )  # fmt: skip
    assert wrong.returncode == 2
    assert b"missing.csv" in wrong.stderr + wrong.stdout
