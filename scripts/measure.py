"""How the benchmark measures one process: a client runs as a child process against an
emulator process and is measured whole by the kernel.

- ``run_measured``: run one process, report its wall time, user and system CPU and peak RSS
  from ``os.wait4`` (everything the client did, interpreter start and final flush included, and
  nothing the harness or the emulator did; ``ru_maxrss`` is KiB on Linux), through a small
  wrapper process so the harness's own memory never shows in the client's peak.
- ``emulator``: ``EmulatorProcess`` plus its pid, so its CPU can be reported apart.

The clients' command lines and what each produced are in ``bench_clients.py``; the manifests
and the finished ledger in ``bench_fixtures.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from pipeline.core.models import DEFAULT_MODEL
from pipeline.emulator import EmulatorProcess

ROOT = Path(__file__).resolve().parent.parent
# Any non-empty key: the emulator accepts every key unless started with --api-key.
API_KEY = "bench-key-not-a-secret"
CLIENT_TIMEOUT_S = 480.0  # one stuck client must not hang the benchmark
_BYTES_PER_KIB = 1024


def progress(message: str) -> None:
    """A line for the person waiting on the benchmark (stderr; stdout gets the table)."""
    print(message, file=sys.stderr, flush=True)


# --- one process, measured ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcessFigures:
    """What one client process cost, from spawn to exit."""

    wall_s: float
    user_s: float
    sys_s: float
    cpu_s: float  # user + sys
    peak_rss_mb: float  # megabytes (10**6 bytes), the unit of the floors
    exit_code: int
    stopped_early: bool  # the harness interrupted it (a time-boxed scenario)


# The measured client is started by this small wrapper, not by the harness, because Linux
# seeds a child's ru_maxrss with the resident size of the process it was spawned from (exec
# records the old address space's high-water mark): a client spawned by a harness holding a
# million-row fixture would report the harness's gigabyte. The wrapper is a fresh interpreter
# of about 10 MB, so the figure is the client's own. It forwards SIGINT (a time box ends) and
# turns SIGTERM (a timeout) into SIGKILL, reaps the client with wait4 and writes the figures.
_WRAPPER = """\
import json, os, signal, subprocess, sys, time
result, log, *argv = sys.argv[1:]
with open(log, "wb") as out:
    started = time.perf_counter()
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
signal.signal(signal.SIGINT, lambda *_: os.kill(child.pid, signal.SIGINT))
signal.signal(signal.SIGTERM, lambda *_: os.kill(child.pid, signal.SIGKILL))
_, status, usage = os.wait4(child.pid, 0)
ended = time.perf_counter()
child.returncode = os.waitstatus_to_exitcode(status)
with open(result, "w") as f:
    json.dump({"wall_s": ended - started, "user_s": usage.ru_utime, "sys_s": usage.ru_stime,
               "maxrss_kib": usage.ru_maxrss, "exit_code": child.returncode}, f)
"""


def run_measured(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log_path: Path,
    timeout_s: float = CLIENT_TIMEOUT_S,
    stop_after: Callable[[], None] | None = None,
) -> ProcessFigures:
    """Run ``argv`` (in the repository root) to its end and measure it; output to ``log_path``.

    ``stop_after``, if given, is called while the child runs (it may block, e.g. sleep until a
    deadline); when it returns, the child gets SIGINT, as from a user's Ctrl-C, and is measured
    until it exits. A child still running after ``timeout_s`` is killed (exit code -9), so one
    stuck client cannot hang the whole benchmark.
    """
    result = log_path.with_suffix(".figures.json")
    result.unlink(missing_ok=True)
    started = time.monotonic()
    wrapper = subprocess.Popen(
        [sys.executable, "-c", _WRAPPER, str(result), str(log_path), *argv],
        cwd=ROOT,
        env=dict(env),
        stdin=subprocess.DEVNULL,
    )
    stopped = False
    if stop_after is not None:
        stop_after()
        if wrapper.poll() is None:
            stopped = True
            wrapper.send_signal(signal.SIGINT)
    try:
        wrapper.wait(timeout=max(timeout_s - (time.monotonic() - started), 1.0))
    except subprocess.TimeoutExpired:
        wrapper.terminate()
        wrapper.wait()
    try:
        figures = json.loads(result.read_text())
    except (OSError, ValueError) as e:
        raise RuntimeError(f"no figures from {argv}: wrapper exit {wrapper.returncode}") from e
    return ProcessFigures(
        wall_s=figures["wall_s"],
        user_s=figures["user_s"],
        sys_s=figures["sys_s"],
        cpu_s=figures["user_s"] + figures["sys_s"],
        peak_rss_mb=figures["maxrss_kib"] * _BYTES_PER_KIB / 1e6,
        exit_code=figures["exit_code"],
        stopped_early=stopped,
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU a live process has used so far (``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        # Field 2 (the command) may hold spaces and parentheses: split after its last ')'.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _child_pid(command_part: str) -> int | None:
    """The pid of a live child of this process whose command line contains ``command_part``."""
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for pid in children:
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                if command_part.encode() in cmdline:
                    return int(pid)
    return None


# --- the emulator --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Emulator:
    """A running emulator process; ``pid`` because ``EmulatorProcess`` does not expose it and
    the report shows the emulator's CPU next to the client's (on two cores they compete)."""

    process: EmulatorProcess
    pid: int | None

    @property
    def base_url(self) -> str:
        return self.process.base_url

    def cpu_s(self) -> float | None:
        return cpu_seconds(self.pid) if self.pid is not None else None

    def stats(self) -> dict[str, Any]:
        return self.process.stats()

    def warm_up(self, image_size: str | None) -> None:
        """One request at the scenario's size, so neither client pays for cold render caches."""
        config: dict[str, Any] = {"responseModalities": ["IMAGE"]}
        if image_size:
            config["imageConfig"] = {"imageSize": image_size}
        body = {"contents": [{"parts": [{"text": "warm-up"}]}], "generationConfig": config}
        url = f"{self.base_url}/v1beta/models/{DEFAULT_MODEL}:generateContent"
        response = httpx.post(url, json=body, headers={"x-goog-api-key": API_KEY}, timeout=120)
        response.raise_for_status()


@contextlib.contextmanager
def emulator(args: Sequence[str]) -> Iterator[Emulator]:
    """The emulator as a separate process on a free loopback port, for one scenario."""
    with EmulatorProcess(list(args)) as process:
        yield Emulator(process, _child_pid("pipeline emulator"))
