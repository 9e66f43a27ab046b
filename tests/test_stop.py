"""Graceful stops of a real run: deadline, first signal drains, second signal cancels."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import anyio
import pyarrow.parquet as pq
import pytest

from pipeline.commands.run import run_and_report
from pipeline.commands.verify import verify
from pipeline.core.clock import VirtualClock
from pipeline.core.config import RetryConfig
from pipeline.core.options import parse_stop
from pipeline.emulator import (
    BackgroundEmulator,
    EmulatorConfig,
    EmulatorTransport,
    Payload,
    parse_latency,
)
from pipeline.run.control import Halt
from tests.helpers import TEST_KEY, emulator, run, run_config, slow_emulator, write_csv


@pytest.fixture
def slow_server() -> Iterator[BackgroundEmulator]:
    with slow_emulator("0.2") as server:
        yield server


def start_sending(
    server: BackgroundEmulator, manifest: Path, out: Path, *extra: str, nohup: bool = False
) -> subprocess.Popen[str]:
    """The CLI on the manifest against ``server``, once its first request has arrived
    (``nohup``: started by nohup(1), which ignores SIGHUP)."""
    process = subprocess.Popen(
        [*(["nohup"] if nohup else []), sys.executable, "-m", "pipeline", "run", str(manifest),
         "--out", str(out), "--base-url", server.base_url, "--concurrency", "4", *extra],
        env={**os.environ, "GEMINI_API_KEY": TEST_KEY},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not server.app.stats_snapshot()["requests"] and time.monotonic() < deadline:
        time.sleep(0.02)
    return process


def recorded(out: Path) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = pq.read_table(out / "ledger.parquet").to_pylist()
    return rows


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "m.csv", [{"id": f"r{i:03d}", "prompt": f"p {i}"}
                                          for i in range(200)])  # fmt: skip


def test_deadline_drains_and_exits_4_with_the_command_to_continue(
    manifest: Path, tmp_path: Path
) -> None:
    # The command in-process on a virtual clock: its minute passes at once, the server takes
    # 8-20 s per image as Google does, and a drain waits for the requests in flight.
    clock = VirtualClock()
    server = emulator(clock=clock, latency=parse_latency("uniform:8-20"))
    out = tmp_path / "out"
    argv = ["run", str(manifest), "--out", str(out), "--concurrency", "4", "--stop-after", "1m"]
    config = run_config(manifest, out, concurrency=4, clock=clock,
                        stop_at=parse_stop("1m", None, clock.now()))  # fmt: skip
    errors: list[str] = []
    code = run_and_report(config, EmulatorTransport(server), argv=argv, out=lambda _: None,
                          err=errors.append)  # fmt: skip
    stderr = "\n".join(errors)
    assert code == 4, stderr
    assert "deadline" in stderr
    assert "rows left" in stderr
    assert f"To continue: nanobatch run {manifest}" in stderr
    rows = recorded(out)
    assert 0 < len(rows) < 200
    # Drained: everything the server finished was recorded, nothing was billed unrecorded.
    assert server.stats_snapshot()["billed"] == len(rows)
    assert verify(out).problems == []


def test_first_signal_drains_in_flight_requests_and_exits_130(
    slow_server: BackgroundEmulator, manifest: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    process = start_sending(slow_server, manifest, out)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    rows = recorded(out)
    assert slow_server.app.stats_snapshot()["billed"] == len(rows)  # in-flight ones finished
    assert not (out / "ledger.journal").exists()  # flushed and folded
    assert verify(out).problems == []


def test_second_signal_cancels_at_once_and_still_flushes(manifest: Path, tmp_path: Path) -> None:
    with slow_emulator("30") as hanging:
        out = tmp_path / "out"
        process = start_sending(hanging, manifest, out)
        process.send_signal(signal.SIGINT)
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=20)  # not the 30 s the requests would take
    assert process.returncode == 130, stderr
    assert not (out / "ledger.journal").exists()
    assert not (out / "ledger.parquet").exists()  # nothing was received, nothing recorded
    attempts = pq.read_table(out / "attempts.parquet").to_pylist()
    assert len(attempts) == 4  # the in-flight requests at concurrency 4
    assert all(a["reason"] == "CANCELLED" and a["possibly_billed"] for a in attempts)
    summary = stdout.split("possibly billed", 1)[-1]
    assert all(str(a["row_id"]) in summary for a in attempts)  # the summary names each one


class Gate:
    """The emulator's ``sleep`` for answer latency: every answer is held until ``open`` (called
    from the test's thread; the held answers wait on the server thread's loop)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._opened = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event = asyncio.Event()  # bound to the server's loop when first awaited

    async def __call__(self, seconds: float) -> None:
        with self._lock:
            if self._opened:
                return
            self._loop = asyncio.get_running_loop()
        await self._event.wait()

    def open(self) -> None:
        with self._lock:
            self._opened = True
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._event.set)


def test_status_json_is_a_heartbeat_while_running_and_a_record_after(
    manifest: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    # Answers are held until status.json has been read mid-run, then they all come at once:
    # the run is surely going when it is read, however slow the machine, and no time is spent
    # waiting out a latency.
    gate = Gate()
    config = EmulatorConfig(latency=parse_latency("1"), sleep=gate, payload=Payload.COMPACT)
    with BackgroundEmulator(config) as server:
        process = start_sending(server, manifest, out, "--limit", "24")
        deadline = time.monotonic() + 30
        while not (out / "status.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        running = json.loads((out / "status.json").read_text())
        gate.open()
        process.communicate(timeout=60)
    assert running["pid"] == process.pid
    assert running["state"] == "running"
    assert running["to_do"] == 24
    final = json.loads((out / "status.json").read_text())
    assert final["state"] == "finished"
    assert final["done"] == 24
    assert final["counts"]["succeeded"] == len(recorded(out)) == 24
    assert final["in_flight"] == 0


def run_log_events(out: Path) -> list[str]:
    lines = (out / "run.log").read_text().splitlines()
    return [json.loads(line)["event"] for line in lines]


def test_a_hang_up_drains_and_the_run_outlives_its_terminal(
    slow_server: BackgroundEmulator, manifest: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    process = start_sending(slow_server, manifest, out)
    process.send_signal(signal.SIGHUP)
    # The terminal is gone: whatever the run writes to its console from now on fails.
    assert process.stdout is not None
    assert process.stderr is not None
    process.stdout.close()
    process.stderr.close()
    assert process.wait(timeout=60) == 130  # drained, as for SIGTERM; not killed by the signal
    rows = recorded(out)
    assert 0 < len(rows) < 200
    assert slow_server.app.stats_snapshot()["billed"] == len(rows)  # in-flight ones recorded
    assert not (out / "ledger.journal").exists()
    assert verify(out).problems == []
    status = json.loads((out / "status.json").read_text())
    assert (status["state"], status["halt"]) == ("finished", "interrupted")
    assert "console.line" in run_log_events(out)  # the summary went to run.log instead


def test_a_console_that_vanishes_without_a_hang_up_does_not_stop_the_run(
    slow_server: BackgroundEmulator, manifest: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    process = start_sending(slow_server, manifest, out, "--limit", "40")
    assert process.stdout is not None
    assert process.stderr is not None
    process.stdout.close()  # a closed pipe: writes fail with EPIPE, no signal comes
    process.stderr.close()
    process.send_signal(signal.SIGTERM)  # its warning is the first write to fail
    assert process.wait(timeout=60) == 130
    rows = recorded(out)
    assert slow_server.app.stats_snapshot()["billed"] == len(rows) > 0
    assert json.loads((out / "status.json").read_text())["state"] == "finished"


def test_under_nohup_a_hang_up_is_ignored(
    slow_server: BackgroundEmulator, manifest: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    process = start_sending(slow_server, manifest, out, "--limit", "4", nohup=True)
    process.send_signal(signal.SIGHUP)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert len(recorded(out)) == 4


async def test_a_drain_abandons_a_hung_request_after_the_grace(
    tmp_path: Path, clock: VirtualClock
) -> None:
    rows = [{"id": "hung", "prompt": "p #hang"}] + [{"id": f"r{i}", "prompt": f"p {i}"}
                                                    for i in range(3)]  # fmt: skip
    manifest = write_csv(tmp_path / "m.csv", rows)
    app = emulator("hang_s=3600", clock)
    retry = RetryConfig(timeouts_s={"1K": 3600.0})  # only the grace can end the hung request
    stop_at = clock.now() + timedelta(seconds=30)
    config = run_config(manifest, tmp_path / "out", concurrency=4, retry=retry,
                        stop_at=stop_at, clock=clock)  # fmt: skip

    with anyio.fail_after(30 + 60 + 5):  # the deadline, then the grace: not the hour
        result = await run(config, app)

    assert result.halt is Halt.DEADLINE
    rows_ = {str(row["row_id"]): row for row in recorded(tmp_path / "out")}
    assert "hung" not in rows_  # left pending: the next run sends it again
    assert sorted(rows_) == ["r0", "r1", "r2"]
    assert all(row["status"] == "succeeded" for row in rows_.values())
    attempts = pq.read_table(tmp_path / "out" / "attempts.parquet").to_pylist()
    hung = [a for a in attempts if a["row_id"] == "hung"]
    assert [(a["reason"], a["possibly_billed"]) for a in hung] == [("ABANDONED", True)]
    assert app.stats_snapshot()["billed"] == 4  # the emulator did bill the hung generation
    assert result.spent_usd > 3 * 0.067  # ...and so does the run's spend: at its worst case


async def test_a_drain_does_not_wait_for_rpm_tokens(tmp_path: Path, clock: VirtualClock) -> None:
    manifest = write_csv(tmp_path / "m.csv", [{"id": f"r{i}", "prompt": f"p {i}"}
                                              for i in range(4)])  # fmt: skip
    app = emulator(clock=clock)
    stop_at = clock.now() + timedelta(seconds=30)
    # One request a minute: the other workers queue for tokens minutes away.
    config = run_config(manifest, tmp_path / "out", concurrency=4, rpm=1, stop_at=stop_at,
                        clock=clock)  # fmt: skip

    with anyio.fail_after(31):
        result = await run(config, app)

    assert result.halt is Halt.DEADLINE
    assert len(recorded(tmp_path / "out")) == 1
    assert app.stats_snapshot()["requests"] == 1
