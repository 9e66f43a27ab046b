"""``EmulatorProcess``: the emulator as a child process (``nanobatch emulator``), for demos and
benchmarks where the client under test must not share a CPU or a GIL with the emulator."""

from __future__ import annotations

import collections
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import IO, Any

import httpx

READY_PREFIX = "nanobatch emulator listening on "
_STDERR_TAIL_LINES = 40


class EmulatorProcess:
    """Start ``python -m pipeline emulator --host 127.0.0.1 --port 0 *args`` and wait until ready.

    stdout and stderr are drained by daemon threads so the child never blocks on a full pipe;
    the last stderr lines are kept for the error raised when the child fails to start.
    """

    def __init__(self, args: Sequence[str] = (), *, startup_timeout_s: float = 30.0) -> None:
        self.args = tuple(args)
        self.base_url = ""
        self._startup_timeout_s = startup_timeout_s
        self._process: subprocess.Popen[str] | None = None
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL_LINES)
        self._stderr_drain: threading.Thread | None = None

    def _command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "pipeline",
            "emulator",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            *self.args,
        ]

    def __enter__(self) -> EmulatorProcess:
        if self._process is not None and self._process.poll() is None:
            raise RuntimeError("this EmulatorProcess is already running")
        process = subprocess.Popen(
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._process = process
        lines: queue.Queue[str | None] = queue.Queue()
        assert process.stdout is not None
        assert process.stderr is not None
        _drain(process.stdout, lines.put)
        self._stderr_drain = _drain(process.stderr, self._keep_stderr)
        try:
            while True:
                line = lines.get(timeout=self._startup_timeout_s)
                if line is None:
                    # Let the child finish and its stderr be read, so the error can quote it.
                    process.wait(timeout=10)
                    self._stderr_drain.join(timeout=5)
                    raise RuntimeError(self._failure("exited before it was ready"))
                if line.startswith(READY_PREFIX):
                    self.base_url = line.removeprefix(READY_PREFIX).strip()
                    return self
        except queue.Empty:
            self._stop()
            raise RuntimeError(
                self._failure(f"not ready after {self._startup_timeout_s:g} s")
            ) from None
        except BaseException:
            self._stop()
            raise

    def _keep_stderr(self, line: str | None) -> None:
        if line is not None:
            self._stderr_tail.append(line)

    def _failure(self, what: str) -> str:
        code = self._process.poll() if self._process is not None else None
        tail = "".join(self._stderr_tail).strip()
        return f"emulator process {what} (exit code {code}): {tail or 'no stderr output'}"

    @property
    def returncode(self) -> int | None:
        """The child's exit status once it has exited (0 after a clean shutdown)."""
        return self._process.poll() if self._process is not None else None

    def stats(self) -> dict[str, Any]:
        """``GET /_emulator/stats``."""
        response = httpx.get(f"{self.base_url}/_emulator/stats")
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    def reset(self) -> None:
        """``POST /_emulator/reset``."""
        httpx.post(f"{self.base_url}/_emulator/reset").raise_for_status()

    def _stop(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __exit__(self, *exc: object) -> None:
        self._stop()


def _drain(stream: IO[str], sink: Callable[[str | None], None]) -> threading.Thread:
    """Read ``stream`` line by line into ``sink`` in a daemon thread; ``None`` marks EOF."""

    def pump() -> None:
        for line in stream:
            sink(line)
        sink(None)

    thread = threading.Thread(target=pump, name="nanobatch-emulator-pipe", daemon=True)
    thread.start()
    return thread
