"""The benchmark's two clients: their command lines, and what each produced, read from its own
output files (nanobatch's ledger and attempt history, the baseline's ``results.jsonl``), beside
what the emulator saw and spent.

- ``Clients.nanobatch``: ``python -m pipeline run`` in the project's environment.
- ``Clients.baseline``: ``scripts/baseline_sdk.py`` under the baseline's own interpreter (see
  ``baseline_env.py``: by default an environment with ``google-genai[aiohttp]``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bench_trash
import pyarrow.compute as pc
import pyarrow.parquet as pq
from measure import (
    API_KEY,
    CLIENT_TIMEOUT_S,
    ROOT,
    Emulator,
    ProcessFigures,
    progress,
    run_measured,
)

from pipeline.store.ledger import ATTEMPTS_FILE, LEDGER_FILE


@dataclass(slots=True)
class ClientRun:
    """One measured run of one client, with what it produced and what the emulator saw."""

    client: str
    argv: list[str]
    figures: ProcessFigures
    rows: int  # rows in the manifest
    succeeded: int  # rows with an image (ledger or results file)
    failed: int  # rows the client gave up on
    send_phase_s: float | None  # first request sent to last answer received, from its records
    emulator: dict[str, Any]  # /_emulator/stats after the run
    emulator_cpu_s: float | None
    out_dir: str
    log: str
    setup: dict[str, Any] = field(default_factory=dict)  # the baseline's SDK and transport


# Bytecode as a user's machine has it: written on the first run, read on every later one.
# Some machines (this one) set PYTHONDONTWRITEBYTECODE, and uv installs without .pyc files, so
# every measured process would otherwise compile each module it imports (~0.7 s for
# nanobatch's): start-up the client does not cost its users, billed to both clients.
PYCACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nanobatch-bench-pyc"


def client_env() -> dict[str, str]:
    """The harness's environment minus anything that could point a client elsewhere, with
    bytecode cached (``PYCACHE``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "GEMINI_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env["GEMINI_API_KEY"] = API_KEY
    return env


def nanobatch_outputs(out_dir: Path) -> tuple[int, int, float | None]:
    """(succeeded, failed, send phase) from the ledger and the attempt history."""
    succeeded = failed = 0
    if (out_dir / LEDGER_FILE).exists():
        status = pq.read_table(out_dir / LEDGER_FILE, columns=["status"])["status"]
        succeeded = int(pc.sum(pc.equal(status, "succeeded")).as_py() or 0)
        failed = int(pc.sum(pc.equal(status, "failed")).as_py() or 0)
    phase = None
    if (out_dir / ATTEMPTS_FILE).exists():
        times = pq.read_table(out_dir / ATTEMPTS_FILE, columns=["started_at", "finished_at"])
        if times.num_rows:
            first = pc.min(times["started_at"]).as_py()
            phase = (pc.max(times["finished_at"]).as_py() - first).total_seconds()
    return succeeded, failed, phase


def _baseline_records(out_dir: Path) -> list[dict[str, Any]]:
    """The baseline's ``results.jsonl``, one dict per row it finished."""
    records = []
    with contextlib.suppress(FileNotFoundError), open(out_dir / "results.jsonl") as f:
        for line in f:
            # A line torn by the interrupt that ends a time-boxed run is skipped.
            with contextlib.suppress(ValueError):
                records.append(json.loads(line))
    return records


def baseline_outputs(out_dir: Path) -> tuple[int, int, float | None]:
    """(succeeded, failed, send phase) from the baseline's ``results.jsonl``."""
    records = _baseline_records(out_dir)
    if not records:
        return 0, 0, None
    succeeded = sum(r["status"] == "succeeded" for r in records)
    failed = sum(r["status"] == "failed" for r in records)
    phase = max(r["finished"] for r in records) - min(r["started"] for r in records)
    return succeeded, failed, phase


def durable_outputs(out_dir: Path) -> tuple[int, int, float | None]:
    """(succeeded, failed, no send phase) from ``durable_client.py``'s journal, one line a row."""
    try:
        succeeded = (out_dir / "journal.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        succeeded = 0
    return succeeded, 0, None


def terminal_rows(out_dir: Path) -> int:
    """Rows of a nanobatch ledger with a final status (succeeded, refused, failed, invalid)."""
    if not (out_dir / LEDGER_FILE).exists():
        return 0
    return int(pq.read_table(out_dir / LEDGER_FILE, columns=["row_id"]).num_rows)


def images_within(out_dir: Path, seconds: float) -> int:
    """Images a client received within ``seconds`` of sending its first request, from its own
    records (a time box measured on the client's side, exact to its clock)."""
    if (out_dir / ATTEMPTS_FILE).exists():
        attempts = pq.read_table(out_dir / ATTEMPTS_FILE).to_pylist()
        if not attempts:
            return 0
        first = min(a["started_at"] for a in attempts)
        return sum(
            a["http_status"] == 200 and (a["finished_at"] - first).total_seconds() <= seconds
            for a in attempts
        )
    records = _baseline_records(out_dir)
    if not records:
        return 0
    first = min(r["started"] for r in records)
    return sum(r["status"] == "succeeded" and r["finished"] - first <= seconds for r in records)


def slug(name: str) -> str:
    """A client's name as a file name: ``nanobatch without --rpm`` -> ``nanobatch-without-rpm``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _script_argv(
    python: Path, script: str, manifest: Path, out_dir: Path, emu: Emulator
) -> list[str]:
    """``python scripts/<script> MANIFEST --out DIR --base-url URL``: a benchmark client."""
    argv = [str(python), str(ROOT / "scripts" / script), str(manifest)]
    return [*argv, "--out", str(out_dir), "--base-url", emu.base_url]


class Clients:
    """Runs nanobatch, the baseline and the bare crash-safe client, one measured child
    process each."""

    def __init__(self, *, keep_images: bool, baseline_python: Path | None = None) -> None:
        self.keep_images = keep_images
        # The baseline's own interpreter (baseline_env.py), nanobatch's is this one.
        self.baseline_python = baseline_python or Path(sys.executable)

    def nanobatch(
        self,
        emu: Emulator,
        out_dir: Path,
        manifest: Path,
        *,
        rows: int,
        concurrency: int,
        image_size: str | None = None,
        rpm: int | None = None,
        client: str = "nanobatch",
        fresh: bool = True,
        stop_after: Callable[[], None] | None = None,
        timeout_s: float = CLIENT_TIMEOUT_S,
        launcher: Sequence[str] = ("-m", "pipeline"),
    ) -> ClientRun:
        """``nanobatch run`` (as ``python -m pipeline run``) on the manifest. ``launcher``: what
        follows the interpreter instead of ``-m pipeline`` (``scripts/http_stacks.py STACK``)."""
        argv = [sys.executable, *launcher, "run", str(manifest), "--out", str(out_dir)]
        argv += ["--base-url", emu.base_url, "--concurrency", str(concurrency)]
        argv += ["--image-size", image_size] if image_size else []
        argv += ["--rpm", str(rpm)] if rpm else []
        return self._run(
            emu,
            argv,
            out_dir,
            nanobatch_outputs,
            client=client,
            rows=rows,
            fresh=fresh,
            stop_after=stop_after,
            timeout_s=timeout_s,
        )

    def baseline(
        self,
        emu: Emulator,
        out_dir: Path,
        manifest: Path,
        *,
        rows: int,
        concurrency: int,
        image_size: str | None = None,
        stop_after: Callable[[], None] | None = None,
    ) -> ClientRun:
        """``scripts/baseline_sdk.py`` on the manifest, with the same settings."""
        argv = _script_argv(self.baseline_python, "baseline_sdk.py", manifest, out_dir, emu)
        argv += ["--concurrency", str(concurrency)]
        argv += ["--image-size", image_size] if image_size else []
        return self._run(
            emu,
            argv,
            out_dir,
            baseline_outputs,
            client="baseline",
            rows=rows,
            stop_after=stop_after,
        )

    def durable(
        self,
        emu: Emulator,
        out_dir: Path,
        manifest: Path,
        *,
        rows: int,
        concurrency: int,
        image_size: str | None = None,
    ) -> ClientRun:
        """``scripts/durable_client.py`` on the manifest, with the same settings: a bare client
        with nanobatch's durability (it runs in nanobatch's environment)."""
        argv = _script_argv(Path(sys.executable), "durable_client.py", manifest, out_dir, emu)
        argv += ["--concurrency", str(concurrency)]
        argv += ["--image-size", image_size] if image_size else []
        return self._run(emu, argv, out_dir, durable_outputs, client="durable client", rows=rows)

    def _run(
        self,
        emu: Emulator,
        argv: list[str],
        out_dir: Path,
        outputs: Callable[[Path], tuple[int, int, float | None]],
        *,
        client: str,
        rows: int,
        fresh: bool = True,
        stop_after: Callable[[], None] | None = None,
        timeout_s: float = CLIENT_TIMEOUT_S,
    ) -> ClientRun:
        """Reset the emulator's counters, run one client measured, and collect what it did.

        ``fresh``: start from an empty output directory (False: measure a prepared one).
        """
        if fresh:
            bench_trash.discard(out_dir)  # deleted later: see bench_trash
            out_dir.mkdir(parents=True)
        emu.process.reset()
        cpu_before = emu.cpu_s()
        log = out_dir.parent / f"{slug(client)}.log"
        progress(f"    {client}: {' '.join(argv[1:])}")
        figures = run_measured(
            argv, env=client_env(), log_path=log, stop_after=stop_after, timeout_s=timeout_s
        )
        stats = emu.stats()
        cpu_after = emu.cpu_s()
        succeeded, failed, phase = outputs(out_dir)
        setup: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            setup = json.loads((out_dir / "baseline.json").read_text(encoding="utf-8"))
        if not self.keep_images:
            # Thousands of images, gigabytes at 4K: nothing reads them after this point.
            bench_trash.discard(out_dir / "images")
        progress(
            f"      exit {figures.exit_code}, {succeeded}/{rows} images, "
            f"wall {figures.wall_s:.1f} s, cpu {figures.cpu_s:.1f} s, "
            f"rss {figures.peak_rss_mb:.0f} MB; emulator saw {stats['requests']} requests "
            f"{stats['by_status']}"
        )
        emulator_cpu = None
        if cpu_before is not None and cpu_after is not None:
            emulator_cpu = cpu_after - cpu_before
        return ClientRun(
            client,
            argv,
            figures,
            rows,
            succeeded,
            failed,
            phase,
            stats,
            emulator_cpu,
            str(out_dir),
            str(log),
            setup,
        )
