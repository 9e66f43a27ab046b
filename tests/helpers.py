"""Test helpers: manifests under a temp dir, run configs, the in-process emulator and a run
against it, and an answer reader that remembers what the HTTP layer told it."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from pipeline.core.clock import VirtualClock
from pipeline.core.config import ApiKey, RunConfig
from pipeline.core.types import Outcome, OutcomeKind
from pipeline.emulator import (
    BackgroundEmulator,
    EmulatorApp,
    EmulatorConfig,
    EmulatorTransport,
    Payload,
    create_app,
    parse_faults,
    parse_latency,
)
from pipeline.run.result import RunResult
from pipeline.run.scheduler import run_manifest
from pipeline.store.journal import Damaged, scan_journal

TEST_KEY = "test-key-0123456789"


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """A CSV manifest with the union of the rows' keys as columns."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: (";".join(v) if isinstance(v, list) else v) for k, v in row.items()}
            )
    return path


def rows_across_models(path: Path, rows: int, subject: str, models: Sequence[str]) -> Path:
    """A manifest of ``rows`` distinct prompts about ``subject``, the models taken in turn (a
    batch run makes one job per model)."""
    return write_csv(path, [
        {"id": f"r{i:03d}", "prompt": f"{subject} {i}", "model": models[i % len(models)]}
        for i in range(rows)
    ])  # fmt: skip


def write_parquet(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """A Parquet manifest; ``images`` as list<string>."""
    pq.write_table(pa.Table.from_pylist(list(rows)), path)
    return path


def journal_records(path: Path) -> list[dict[str, Any]]:
    """A journal's intact records in order, damaged lines and a torn tail left out."""
    return [r for r in scan_journal(path) if not isinstance(r, Damaged)]


def make_image(path: Path, size: tuple[int, int] = (64, 48), fmt: str = "PNG") -> Path:
    Image.new("RGB", size, (200, 30, 30)).save(path, fmt)
    return path


def run_config(manifest: Path, out: Path, **overrides: Any) -> RunConfig:
    """A RunConfig pointed at the in-process emulator's base URL, with the real retry policy:
    a test whose rows wait (backoff, a 429, latency, a deadline) passes ``clock=`` the
    ``clock`` fixture's VirtualClock, and gives the emulator the same clock."""
    values: dict[str, Any] = {
        "manifest": manifest,
        "out_dir": out,
        "base_url": "http://emulator.invalid",
        "api_key": ApiKey(TEST_KEY, "test"),
        "concurrency": 8,
        # The reserve kept for a full disk, allocated and freed by every run: 4 MB per request
        # in flight by default, which a memory-backed temporary folder (conftest) fills with
        # zeros each time. The disk-full tests set their own.
        "disk_headroom_bytes": 2 << 20,
    }
    values.update(overrides)
    return RunConfig(**values)


def emulator(faults: str = "", clock: VirtualClock | None = None, **kwargs: Any) -> EmulatorApp:
    """The in-process emulator (compact images, ``faults`` as ``--faults`` spells them); on the
    test's clock when the test runs on one."""
    if clock is not None:
        kwargs["clock"] = clock.monotonic
    return create_app(
        EmulatorConfig(faults=parse_faults(faults), payload=Payload.COMPACT, **kwargs)
    )


def slow_emulator(latency: str) -> BackgroundEmulator:
    """The emulator on a loopback port (compact images), each answer taking ``latency`` (as
    ``--latency`` spells it): for runs started as real processes."""
    return BackgroundEmulator(
        EmulatorConfig(latency=parse_latency(latency), payload=Payload.COMPACT)
    )


async def run(config: RunConfig, app: EmulatorApp) -> RunResult:
    """A run of ``config`` against the in-process emulator ``app``."""
    return await run_manifest(config, EmulatorTransport(app))


def start_run(manifest: Path, out: Path, base_url: str, *flags: str) -> subprocess.Popen[bytes]:
    """``nanobatch run`` as a real process against the emulator at ``base_url``, its output
    discarded: for tests that watch, signal or kill a run while it is going."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", str(manifest), "--out", str(out),
         "--base-url", base_url, *flags],
        env={**os.environ, "GEMINI_API_KEY": TEST_KEY},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


class Recorder:
    """An ``AnswerReader`` that remembers what it was told."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.body = bytearray()
        self.headers: dict[str, str] = {}

    def begin(self, status: int, headers: Mapping[str, str]) -> None:
        self.events.append(f"begin {status}")
        self.headers = dict(headers.items())

    def feed(self, chunk: bytes) -> None:
        self.body += chunk
        self.events.append("feed")

    def finish(self) -> Outcome:
        self.events.append("finish")
        return Outcome(OutcomeKind.SUCCESS, "STOP")

    def abort(self) -> None:
        self.events.append("abort")
