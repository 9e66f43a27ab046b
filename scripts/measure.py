"""How the benchmark measures: clients run as child processes against an emulator process,
measured whole by the kernel, on fixtures both clients read the same way.

- ``run_measured``: run one process, report its wall time, user and system CPU and peak RSS
  from ``os.wait4`` (everything the client did, interpreter start and final flush included, and
  nothing the harness or the emulator did; ``ru_maxrss`` is KiB on Linux), through a small
  wrapper process so the harness's own memory never shows in the client's peak.
- ``emulator``: ``EmulatorProcess`` plus its pid, so its CPU can be reported apart.
- ``Clients``: the two command lines (nanobatch, the SDK baseline), what each produced (from
  its own output files) and what the emulator saw.
- ``write_manifest`` / ``write_done_ledger``: the CSV manifests and a finished ledger.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipeline.core.models import DEFAULT_MODEL, resolve_model
from pipeline.core.types import Job
from pipeline.emulator import EmulatorProcess
from pipeline.plan.fingerprint import fingerprint
from pipeline.store.ledger import ATTEMPTS_FILE, LEDGER_FILE, SCHEMA

ROOT = Path(__file__).resolve().parent.parent
# Any non-empty key: the emulator accepts every key unless started with --api-key.
API_KEY = "bench-key-not-a-secret"
CLIENT_TIMEOUT_S = 480.0  # one stuck client must not hang the benchmark
_BYTES_PER_KIB = 1024

_PRODUCTS = ("canvas sneaker", "ceramic mug", "waxed backpack", "brass desk lamp", "linen shirt")
_COLOURS = ("red", "navy", "olive", "sand", "charcoal", "teal", "ochre")
_SCENES = (
    "on a white studio background, soft shadow",
    "on a marble kitchen counter, morning light",
    "in a minimalist living room, 35mm photo",
    "on a wooden table next to a window",
)


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


# --- the clients ---------------------------------------------------------------------------


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


def _client_env() -> dict[str, str]:
    """The harness's environment minus anything that could point a client elsewhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "GEMINI_"))}
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


class Clients:
    """Runs nanobatch and the baseline, one measured child process each."""

    def __init__(self, *, keep_images: bool) -> None:
        self.keep_images = keep_images

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
    ) -> ClientRun:
        """``nanobatch run`` (as ``python -m pipeline run``) on the manifest."""
        argv = [sys.executable, "-m", "pipeline", "run", str(manifest), "--out", str(out_dir)]
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
        argv = [sys.executable, str(ROOT / "scripts" / "baseline_sdk.py"), str(manifest)]
        argv += ["--out", str(out_dir), "--base-url", emu.base_url]
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
            shutil.rmtree(out_dir, ignore_errors=True)
            out_dir.mkdir(parents=True)
        emu.process.reset()
        cpu_before = emu.cpu_s()
        log = out_dir.parent / f"{slug(client)}.log"
        progress(f"    {client}: {' '.join(argv[1:])}")
        figures = run_measured(
            argv, env=_client_env(), log_path=log, stop_after=stop_after, timeout_s=timeout_s
        )
        stats = emu.stats()
        cpu_after = emu.cpu_s()
        succeeded, failed, phase = outputs(out_dir)
        if not self.keep_images:
            # Thousands of images, gigabytes at 4K: nothing reads them after this point.
            shutil.rmtree(out_dir / "images", ignore_errors=True)
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
        )


# --- fixtures ------------------------------------------------------------------------------


def _prompt(i: int) -> str:
    """A distinct, plausible prompt per row, so the emulator's image cache never helps."""
    product = _PRODUCTS[i % len(_PRODUCTS)]
    colour = _COLOURS[(i // len(_PRODUCTS)) % len(_COLOURS)]
    scene = _SCENES[(i // 35) % len(_SCENES)]
    return f"Product photo {i} of a {colour} {product} {scene}"


def _row_id(i: int) -> str:
    return f"row-{i:07d}"


def write_manifest(path: Path, rows: int) -> Path:
    """A CSV manifest with ``id`` and ``prompt`` columns (made once, then reused)."""
    if not path.exists():
        table = pa.table(
            {
                "id": pa.array([_row_id(i) for i in range(rows)], pa.string()),
                "prompt": pa.array([_prompt(i) for i in range(rows)], pa.string()),
            }
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        pacsv.write_csv(table, partial)
        partial.replace(path)
    return path


def write_done_ledger(out_dir: Path, rows: int, cache: Path) -> None:
    """A ledger in which every row of ``write_manifest(rows)`` succeeded, into ``out_dir``.

    Fingerprints are computed as the planner computes them (the row resolved against the run
    defaults: default model, no size, no ratio, no source images), so a resume must find every
    row done and unchanged. No image files: a resume reads only row_id, status and fingerprint.
    The file is built once into ``cache`` (a million fingerprints take seconds), keyed by the
    ledger schema and a sample fingerprint so a change to either rebuilds it, and copied for
    each run, so a run that rewrote it could not spoil the next.
    """
    model, _ = resolve_model(DEFAULT_MODEL)
    probe = fingerprint(Job(_row_id(0), 1, _prompt(0), (), model, None, None), [])
    key = hashlib.sha256(f"{SCHEMA}|{probe}|{rows}".encode()).hexdigest()[:16]
    cached = cache / f"done-{rows}-{key}.parquet"
    if not cached.exists():
        ids = [_row_id(i) for i in range(rows)]
        prompts = [_prompt(i) for i in range(rows)]
        prints = [
            fingerprint(Job(row_id, i + 1, prompt, (), model, None, None), [])
            for i, (row_id, prompt) in enumerate(zip(ids, prompts, strict=True))
        ]
        columns = {name: pa.nulls(rows, SCHEMA.field(name).type) for name in SCHEMA.names}
        columns.update(
            row_id=pa.array(ids, pa.string()),
            line=pa.array(range(1, rows + 1), pa.int64()),
            status=pa.array(["succeeded"] * rows, pa.string()),
            reason=pa.array(["STOP"] * rows, pa.string()),
            model=pa.array([model] * rows, pa.string()),
            fingerprint=pa.array(prints, pa.string()),
            prompt=pa.array(prompts, pa.string()),
        )
        cache.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(".partial")
        table = pa.table([columns[name] for name in SCHEMA.names], schema=SCHEMA)
        pq.write_table(table, partial, compression="zstd")
        partial.replace(cached)
    shutil.rmtree(out_dir, ignore_errors=True)
    (out_dir / "images").mkdir(parents=True)
    shutil.copyfile(cached, out_dir / LEDGER_FILE)
