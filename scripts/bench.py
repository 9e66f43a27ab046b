"""Benchmark nanobatch against a loop around the official SDK (``scripts/baseline_sdk.py``).

Each scenario starts the emulator as a separate process on loopback, then runs each client on
the same manifest, with the same emulator settings and the same concurrency, as a child process
measured whole (wall time, user+sys CPU, peak RSS; see ``measure.py``). The emulator's counters
are reset between clients and its own CPU is reported apart, never counted as the client's.

    scripts/bench                 # every scenario, full size (writes docs/benchmarks.md, .json)
    scripts/bench --quick         # rows and time boxes / 10: a smoke run (bench-out/)
    scripts/bench --only 4        # one scenario, merged into the results of an earlier run

Scenarios (full size):

1. latency-bound: emulator latency 0.25 s, concurrency 64, 2,000 rows of 512 px.
   Limit 64 / 0.25 = 256 rows/s.
2. CPU-bound: latency 0, concurrency 16, 1,000 rows of 1K: client CPU per image.
3. memory: latency 0, concurrency 32, 300 rows of 4K: peak RSS of the client.
4. quota: emulator ``--rpm 1200``, each client stopped 60 s after its first request:
   achieved / allowed rate, share of 429s.
5. resume: a 1,000,000-row manifest whose rows are all done: time to exit, peak RSS.
6. streaming: ``nanobatch validate`` on a 1,000,000-row manifest: peak RSS (skipped until
   the command exists).
7. fold: the restart after a crashed 1,000,000-row run folds 1,000,000 journal records (and
   as many attempts) into the Parquet files: peak RSS and time of a child that only folds.
8. hostile mix: 600 rows of 512 px, concurrency 32, emulator latency uniform 0.2-0.5 s and
   a fault mix of 30% 429s, 25% 5xx, resets, truncated bodies, hangs and refusals (seed 4):
   the run's wall time with the default timeouts, every row terminal, no early retry.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import fold_scale
from measure import (
    ROOT,
    ClientRun,
    Clients,
    Emulator,
    emulator,
    images_within,
    progress,
    run_measured,
    slug,
    terminal_rows,
    write_done_ledger,
    write_manifest,
)

DOCS = ROOT / "docs"
QUICK_SCALE = 10
HOSTILE_TIMEOUT_S = 5400.0  # before the fix this scenario took over an hour: measure it whole
# Everything after this line in docs/benchmarks.md is hand-written and kept by regeneration.
NOTES_MARKER = "<!-- hand-written analysis below this line is kept when scripts/bench rewrites -->"


@dataclass(frozen=True, slots=True)
class Metric:
    """One line of the table; the ratio is always nanobatch / baseline."""

    name: str
    unit: str  # how values print: "rows/s", "s", "MB", "ms", "%", "n"
    nanobatch: float | None
    baseline: float | None = None
    limit: str = ""
    floor: str = ""  # the target, in words
    met: bool | None = None  # None: no floor on this line

    def as_dict(self) -> dict[str, Any]:
        ratio = None
        if self.nanobatch is not None and self.baseline:
            ratio = self.nanobatch / self.baseline
        return {**asdict(self), "ratio": ratio}


@dataclass(slots=True)
class Scenario:
    """What one scenario measured, as written to the JSON file."""

    number: int
    title: str
    settings: str
    metrics: list[Metric] = field(default_factory=list)
    runs: list[ClientRun] = field(default_factory=list)
    skipped: str | None = None
    problems: list[str] = field(default_factory=list)  # client runs that fell short


class Bench:
    """One benchmark invocation: its size, its working directory and its clients."""

    def __init__(self, work: Path, *, quick: bool, keep_images: bool) -> None:
        self.work = work
        self.quick = quick
        self.mode = "quick" if quick else "full"
        self.clients = Clients(keep_images=keep_images)

    def scaled(self, full: int) -> int:
        return max(full // QUICK_SCALE, 1) if self.quick else full

    def manifest(self, rows: int) -> Path:
        return write_manifest(self.work / "manifests" / f"rows-{rows}.csv", rows)

    def head_to_head(
        self, emu: Emulator, tag: str, rows: int, concurrency: int, size: str
    ) -> tuple[ClientRun, ClientRun]:
        """nanobatch, then the baseline, on the same manifest and settings."""
        manifest, out = self.manifest(rows), self.work / tag
        common: dict[str, Any] = {"rows": rows, "concurrency": concurrency, "image_size": size}
        nb = self.clients.nanobatch(emu, out / "nanobatch", manifest, **common)
        base = self.clients.baseline(emu, out / "baseline", manifest, **common)
        return nb, base


def _problems(runs: Sequence[ClientRun]) -> list[str]:
    """Client runs that did not do the whole job: listed under the table."""
    out = []
    for run in runs:
        if run.figures.stopped_early:
            continue  # a time box: stopping it was the point
        if run.figures.exit_code != 0:
            out.append(f"{run.client} exited with code {run.figures.exit_code} (log: {run.log})")
        if run.succeeded < run.rows:
            out.append(f"{run.client} produced {run.succeeded} of {run.rows} images")
    return out


def _per_s(rows: int, seconds: float | None) -> float | None:
    return rows / seconds if seconds else None


def _process_metrics(nb: ClientRun, base: ClientRun) -> list[Metric]:
    return [
        Metric("wall time", "s", nb.figures.wall_s, base.figures.wall_s),
        Metric("client CPU (user+sys)", "s", nb.figures.cpu_s, base.figures.cpu_s),
        Metric("peak RSS", "MB", nb.figures.peak_rss_mb, base.figures.peak_rss_mb),
    ]


# --- scenarios -----------------------------------------------------------------------------


def scenario_latency(bench: Bench) -> Scenario:
    rows, concurrency, size, latency = bench.scaled(2000), 64, "512", 0.25
    limit = concurrency / latency
    result = Scenario(
        1,
        "latency-bound",
        f"emulator latency {latency} s, concurrency {concurrency}, {rows} rows of {size} px",
    )
    with emulator(["--latency", str(latency)]) as emu:
        emu.warm_up(size)
        nb, base = bench.head_to_head(emu, "s1", rows, concurrency, size)
    nb_rate, base_rate = nb.succeeded / nb.figures.wall_s, base.succeeded / base.figures.wall_s
    result.runs += [nb, base]
    result.metrics += [
        Metric(
            "rows/s, whole process",
            "rows/s",
            nb_rate,
            base_rate,
            limit=f"{limit:.0f} rows/s",
            floor=f">= {0.95 * limit:.1f} rows/s (95%) and >= baseline",
            met=nb_rate >= 0.95 * limit and nb_rate >= base_rate,
        ),
        Metric(
            "rows/s, send phase (first request to last answer)",
            "rows/s",
            _per_s(nb.succeeded, nb.send_phase_s),
            _per_s(base.succeeded, base.send_phase_s),
            limit=f"{limit:.0f} rows/s",
        ),
        *_process_metrics(nb, base),
    ]
    return result


def scenario_cpu(bench: Bench) -> Scenario:
    rows, concurrency, size = bench.scaled(1000), 16, "1K"
    result = Scenario(
        2, "CPU-bound", f"emulator latency 0, concurrency {concurrency}, {rows} rows of {size}"
    )
    with emulator(["--latency", "0"]) as emu:
        emu.warm_up(size)
        nb, base = bench.head_to_head(emu, "s2", rows, concurrency, size)
    result.runs += [nb, base]
    nb_ms = 1000 * nb.figures.cpu_s / max(nb.succeeded, 1)
    base_ms = 1000 * base.figures.cpu_s / max(base.succeeded, 1)
    emu_ms = [
        1000 * run.emulator_cpu_s / run.succeeded if run.emulator_cpu_s and run.succeeded else None
        for run in (nb, base)
    ]
    result.metrics += [
        Metric(
            "client CPU per image (user+sys)",
            "ms",
            nb_ms,
            base_ms,
            floor="<= 0.6x baseline",
            met=nb_ms <= 0.6 * base_ms,
        ),
        Metric(
            "rows/s, whole process",
            "rows/s",
            nb.succeeded / nb.figures.wall_s,
            base.succeeded / base.figures.wall_s,
        ),
        *_process_metrics(nb, base),
        Metric("emulator CPU per image (not the client's)", "ms", emu_ms[0], emu_ms[1]),
    ]
    return result


def scenario_memory(bench: Bench) -> Scenario:
    rows, concurrency, size = bench.scaled(300), 32, "4K"
    result = Scenario(
        3, "memory", f"emulator latency 0, concurrency {concurrency}, {rows} rows of {size}"
    )
    with emulator(["--latency", "0"]) as emu:
        emu.warm_up(size)
        nb, base = bench.head_to_head(emu, "s3", rows, concurrency, size)
    result.runs += [nb, base]
    nb_mb, base_mb = nb.figures.peak_rss_mb, base.figures.peak_rss_mb
    result.metrics += [
        Metric(
            "peak RSS", "MB", nb_mb, base_mb, floor="<= 0.5x baseline", met=nb_mb <= 0.5 * base_mb
        ),
        Metric("wall time", "s", nb.figures.wall_s, base.figures.wall_s),
        Metric("client CPU (user+sys)", "s", nb.figures.cpu_s, base.figures.cpu_s),
    ]
    return result


def _time_box(emu: Emulator, box_s: float, snapshot: dict[str, Any]) -> Callable[[], None]:
    """Sleep until ``box_s`` after the emulator saw the client's first request, then keep the
    emulator's counters as they were at that instant (the client is stopped right after)."""

    def wait() -> None:
        give_up = time.monotonic() + 60
        # The emulator has no "first request" event to wait on: poll its counter, only for
        # the second or so the client takes to start.
        while emu.stats()["requests"] == 0 and time.monotonic() < give_up:
            time.sleep(0.02)
        time.sleep(box_s)
        snapshot.update(emu.stats())

    return wait


def scenario_quota(bench: Bench) -> Scenario:
    rpm, concurrency, size = 1200, 16, "512"
    box_s = 60.0 / QUICK_SCALE if bench.quick else 60.0
    allowed = rpm * box_s / 60
    rows = bench.scaled(2400)  # more than any client can finish in the box
    result = Scenario(
        4,
        "quota",
        f"emulator --rpm {rpm} (a sliding 60 s window that starts empty), latency 0, "
        f"concurrency {concurrency}, {rows} rows of {size} px; each client stopped (SIGINT) "
        f"{box_s:g} s after the emulator saw its first request",
    )
    manifest, out = bench.manifest(rows), bench.work / "s4"
    at_deadline: dict[str, dict[str, Any]] = {}
    with emulator(["--rpm", str(rpm)]) as emu:
        emu.warm_up(size)
        for client in ("nanobatch", "nanobatch without --rpm", "baseline"):
            at_deadline[client] = {}
            box = _time_box(emu, box_s, at_deadline[client])
            common: dict[str, Any] = {"rows": rows, "concurrency": concurrency, "stop_after": box}
            if client == "baseline":
                run = bench.clients.baseline(emu, out / "baseline", manifest, **common)
            else:
                run = bench.clients.nanobatch(
                    emu,
                    out / slug(client),
                    manifest,
                    rpm=rpm if client == "nanobatch" else None,
                    client=client,
                    **common,
                )
            run.emulator = {"at_deadline": at_deadline[client], "after_exit": run.emulator}
            result.runs.append(run)

    # Images the client received within the box, from its own records: the emulator's
    # counters at the deadline are a few requests off, because the sliding window reopens at
    # the very instant the box ends (they are kept in the JSON).
    received = {run.client: images_within(Path(run.out_dir), box_s) for run in result.runs}

    def achieved(client: str) -> float:
        return 100 * received[client] / allowed

    def share_429(client: str) -> float:
        stats = at_deadline[client]
        return 100 * int(stats.get("by_status", {}).get("429", 0)) / max(int(stats["requests"]), 1)

    paced, adaptive, base = result.runs
    result.metrics += [
        Metric(
            "achieved / allowed rate",
            "%",
            achieved("nanobatch"),
            achieved("baseline"),
            limit=f"{rpm}/min: {allowed:.0f} in {box_s:g} s",
            floor=">= 97%",
            met=achieved("nanobatch") >= 97,
        ),
        Metric(
            "share of requests answered 429",
            "%",
            share_429("nanobatch"),
            share_429("baseline"),
            floor="<= 1%",
            met=share_429("nanobatch") <= 1,
        ),
        Metric(
            "requests in the box",
            "n",
            at_deadline["nanobatch"]["requests"],
            at_deadline["baseline"]["requests"],
        ),
        Metric("rows given up (failed)", "n", paced.failed, base.failed),
        Metric(
            "without --rpm (adaptive only): achieved / allowed",
            "%",
            achieved("nanobatch without --rpm"),
            achieved("baseline"),
        ),
        Metric(
            "without --rpm (adaptive only): share answered 429",
            "%",
            share_429("nanobatch without --rpm"),
            share_429("baseline"),
        ),
        Metric("without --rpm (adaptive only): rows given up", "n", adaptive.failed, base.failed),
    ]
    return result


def scenario_resume(bench: Bench) -> Scenario:
    rows = bench.scaled(1_000_000)
    result = Scenario(
        5,
        "resume",
        f"{rows:,}-row manifest, every row already succeeded in a ledger written directly (no "
        "plan state, no image files); run twice: the first run has no record of what the done "
        "rows were checked against and checks each, the second finds the record the first left "
        "(as after any finished run)",
    )
    manifest, out = bench.manifest(rows), bench.work / "s5" / "nanobatch"
    progress(f"    preparing a {rows:,}-row finished ledger")
    write_done_ledger(out, rows, bench.work / "fixtures")
    with emulator(["--latency", "0"]) as emu:
        first, again = (
            bench.clients.nanobatch(
                emu, out, manifest, rows=rows, concurrency=16, fresh=False, client=client
            )
            for client in ("nanobatch (no plan state)", "nanobatch")
        )
    result.runs += [first, again]
    wall, rss = again.figures.wall_s, again.figures.peak_rss_mb
    requests = int(first.emulator["requests"]) + int(again.emulator["requests"])
    result.metrics += [
        Metric("time to exit", "s", wall, floor="< 5 s", met=wall < 5),
        Metric("peak RSS", "MB", rss, floor="< 500 MB", met=rss < 500),
        Metric("client CPU (user+sys)", "s", again.figures.cpu_s),
        Metric("requests sent (both runs)", "n", requests, floor="0", met=requests == 0),
        Metric("no plan state (first run): time to exit", "s", first.figures.wall_s),
        Metric("no plan state (first run): peak RSS", "MB", first.figures.peak_rss_mb),
    ]
    return result


def validate_available() -> bool:
    """Whether ``nanobatch validate`` exists yet (it is another issue's work)."""
    probe = [sys.executable, "-m", "pipeline", "validate", "--help"]
    return subprocess.run(probe, cwd=ROOT, capture_output=True, check=False).returncode == 0


def scenario_validate(bench: Bench) -> Scenario:
    rows = bench.scaled(1_000_000)
    result = Scenario(6, "streaming", f"`nanobatch validate` on a {rows:,}-row manifest")
    if not validate_available():
        result.skipped = "not implemented yet (`nanobatch validate --help` fails)"
        return result
    argv = [sys.executable, "-m", "pipeline", "validate", str(bench.manifest(rows))]
    _measure_alone(result, argv, bench.work / "s6-validate.log", "nanobatch validate")
    return result


def _measure_alone(result: Scenario, argv: list[str], log: Path, what: str) -> None:
    """One process, no emulator: its peak RSS (the floor: under 300 MB) and time."""
    progress(f"    nanobatch: {' '.join(argv[1:])}")
    figures = run_measured(argv, env=dict(os.environ), log_path=log)
    rss = figures.peak_rss_mb
    result.metrics += [
        Metric("peak RSS", "MB", rss, floor="< 300 MB", met=rss < 300),
        Metric("wall time", "s", figures.wall_s),
        Metric("client CPU (user+sys)", "s", figures.cpu_s),
    ]
    if figures.exit_code != 0:
        result.problems.append(f"{what} exited with code {figures.exit_code} ({log})")


def scenario_fold(bench: Bench) -> Scenario:
    records = bench.scaled(1_000_000)
    result = Scenario(
        7,
        "fold",
        f"an output directory as a crashed {records:,}-row run leaves it: {records:,} records in "
        f"ledger.journal and as many in attempts.journal, no Parquet files; a child process "
        f"opens and closes the ledger (`scripts/fold_scale.py`), which folds them",
    )
    out = bench.work / "s7"
    progress(f"    preparing {records:,} journal records")
    fold_scale.prepare(out, records, bench.work / "fixtures")
    argv = [sys.executable, str(ROOT / "scripts" / "fold_scale.py"), str(out)]
    _measure_alone(result, argv, bench.work / "s7-fold.log", "the fold")
    return result


HOSTILE_FAULTS = (
    "429=0.3,500=0.1,503=0.1,504=0.05,reset=0.05,truncate=0.05,hang=0.02,block=0.02,unsafe=0.05"
)


def scenario_hostile(bench: Bench) -> Scenario:
    rows, concurrency, size = bench.scaled(600), 32, "512"
    emulator_args = ["--latency", "uniform:0.2-0.5", "--seed", "4", "--faults", HOSTILE_FAULTS]
    result = Scenario(
        8,
        "hostile mix",
        f"emulator {' '.join(emulator_args)} (its default 429 delay, 5 s; a hang holds its "
        f"answer 900 s), concurrency {concurrency}, {rows} rows of {size} px, nanobatch's "
        "default timeouts (120 s at 512 px)",
    )
    with emulator(emulator_args) as emu:  # no warm-up request: it would meet the faults too
        manifest = bench.manifest(rows)
        nb = bench.clients.nanobatch(
            emu, bench.work / "s8" / "nanobatch", manifest, rows=rows,
            concurrency=concurrency, image_size=size, timeout_s=HOSTILE_TIMEOUT_S,
        )  # fmt: skip
    result.runs.append(nb)
    wall, stats = nb.figures.wall_s, nb.emulator
    terminal = terminal_rows(Path(nb.out_dir))
    early = int(stats.get("early_retries", 0))
    result.metrics += [
        Metric("wall time", "s", wall, floor="< 600 s", met=wall < 600),
        Metric("rows terminal", "n", terminal, floor=f"{rows}", met=terminal == rows),
        Metric("early retries (before the 429's delay)", "n", early, floor="0", met=early == 0),
        Metric("billed duplicates", "n", int(stats.get("billed_duplicates", 0))),
        Metric("rows succeeded", "n", nb.succeeded),
        Metric("rows failed (retries used up)", "n", nb.failed),
        Metric("requests", "n", int(stats.get("requests", 0))),
        Metric("most requests in flight at once (emulator)", "n", stats.get("max_in_flight")),
    ]
    return result


SCENARIOS: dict[int, Callable[[Bench], Scenario]] = {
    1: scenario_latency,
    2: scenario_cpu,
    3: scenario_memory,
    4: scenario_quota,
    5: scenario_resume,
    6: scenario_validate,
    7: scenario_fold,
    8: scenario_hostile,
}


# --- report --------------------------------------------------------------------------------


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()


def machine_info() -> dict[str, Any]:
    """What the figures depend on: the machine, the interpreter, the code."""
    info: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for name in ("/proc/cpuinfo", "/proc/meminfo"):
            for line in Path(name).read_text().splitlines():
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    return {
        "cores": os.cpu_count(),
        "cpu_model": info.get("model name", ""),
        "memory_gb": int(info.get("MemTotal", "0 kB").split()[0]) * 1024 / 1e9,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "google_genai": importlib.metadata.version("google-genai"),
        "nanobatch": importlib.metadata.version("nanobatch"),
        "commit": _commit(),
    }


def _commit() -> str:
    """The code being measured (others may commit or edit between scenarios)."""
    dirty = _git("status", "--porcelain", "--", "pipeline")
    return _git("rev-parse", "--short", "HEAD") + (
        " with uncommitted changes in pipeline/" if dirty else ""
    )


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "n":
        return f"{value:,.0f}"
    if unit == "%":
        return f"{value:.1f}%"
    if unit == "s":
        return f"{value:.2f} s"
    return f"{value:,.0f} {unit}" if value >= 100 else f"{value:.1f} {unit}"


HOW_MEASURED = """\
`scripts/bench` starts the emulator (`python -m pipeline emulator`) as its own process on a
loopback port for each scenario and sends it one warm-up request at the scenario's image size.
It then runs each client as a child process on the same CSV manifest (`id`, `prompt`; distinct
prompts, so the emulator's image cache never helps) with the same concurrency, resetting the
emulator's counters in between: nanobatch as `python -m pipeline run MANIFEST --out DIR
--base-url URL --concurrency N [--image-size S] [--rpm R]`, the baseline as `python
scripts/baseline_sdk.py` with the same settings (async client, the SDK's retries on with 5
attempts, `asyncio.Semaphore(N)`, `gather` over all rows, each image written to a file, one
JSON line per row). Every figure is whole-process, from spawn to exit, as the kernel counted it
for the child (`os.wait4`): wall time, user+sys CPU, peak RSS (`ru_maxrss`; MB = 10^6 bytes).
The emulator's CPU is read from `/proc` and never counted as a client's. *Rows/s, whole
process* divides the images written by the wall time, interpreter start and final flush
included; *send phase* divides them by the time from the first request sent to the last answer
received, from each client's own records (`attempts.parquet`, `results.jsonl`). The quota
scenario stops each client with SIGINT 60 s after the emulator saw its first request. The
emulator's window starts empty, so the first 60 s hold exactly one minute's quota (1,200
requests) whether a client spends it in a burst or evenly: *achieved / allowed* is the number
of images a client received within 60 s of its first request (from its own records) over
1,200, and the share of 429s is the emulator's count at the deadline. Each scenario runs
once, on a machine that may be doing other work: expect several percent of noise."""


def render_markdown(report: dict[str, Any], notes: str) -> str:
    machine, scenarios = report["machine"], report["scenarios"]
    lines = [
        "# Benchmarks",
        "",
        "nanobatch against what a user writes instead: a loop around the official `google-genai` "
        "SDK ([`scripts/baseline_sdk.py`](../scripts/baseline_sdk.py)), both against the local "
        "emulator. Written by [`scripts/bench`](../scripts/bench); raw figures in "
        "[`benchmarks.json`](benchmarks.json).",
        "",
    ]
    if any(s["mode"] == "quick" for s in scenarios.values()):
        lines += [
            "> **Smoke run (`--quick`)**: a tenth of the rows and of the time box, so fixed "
            "costs (interpreter start, imports) dominate. These figures say the harness works, "
            "not how nanobatch compares.",
            "",
        ]
    lines += [
        f"Measured {report['generated_at']} on {machine['cores']} cores "
        f"({machine['cpu_model'] or 'unknown CPU'}, {machine['memory_gb']:.0f} GB RAM), "
        f"Python {machine['python']}, google-genai {machine['google_genai']}, "
        f"nanobatch {machine['nanobatch']} at {machine['commit']}; {machine['platform']}.",
        "",
        "| scenario | metric | nanobatch | baseline | ratio | limit | floor |",
        "|---|---|---|---|---|---|---|",
    ]
    problems: list[str] = []
    for key in sorted(scenarios, key=int):
        s = scenarios[key]
        label = f"{s['number']}. {s['title']}"
        if s["skipped"]:
            lines.append(f"| {label} | all | {s['skipped']} | n/a | | | |")
        for i, m in enumerate(s["metrics"]):
            ratio = f"{m['ratio']:.2f}x" if m["ratio"] is not None else ""
            floor = m["floor"]
            if m["met"] is not None:
                floor = f"{'met' if m['met'] else '**missed**'}: {floor}"
            lines.append(
                f"| {label if i == 0 else ''} | {m['name']} | {_fmt(m['nanobatch'], m['unit'])} "
                f"| {_fmt(m['baseline'], m['unit'])} | {ratio} | {m['limit']} | {floor} |"
            )
        problems += [f"scenario {s['number']}: {p}" for p in s["problems"]]
    lines += ["", "Settings:", ""]
    for key in sorted(scenarios, key=int):
        s = scenarios[key]
        lines.append(
            f"{s['number']}. **{s['title']}** ({s['mode']} run, {s['measured_at']}, "
            f"{s['duration_s']:.0f} s, load average {s.get('load_1m_before', 0):.1f} before, "
            f"code at {s.get('commit', '?')}): {s['settings']}."
        )
    if problems:
        lines += ["", "Client runs that did not do the whole job:", ""]
        lines += [f"- {p}" for p in problems]
    lines += ["", "## How measured", "", HOW_MEASURED, "", NOTES_MARKER]
    if notes.strip():
        lines += ["", notes.strip("\n")]
    return "\n".join(lines) + "\n"


def _kept_notes(path: Path) -> str:
    with contextlib.suppress(OSError):
        _, marker, notes = path.read_text(encoding="utf-8").partition(NOTES_MARKER)
        return notes if marker else ""
    return ""


def _earlier_scenarios(path: Path, mode: str) -> dict[str, Any]:
    """Scenarios of an earlier run in the same mode, for ``--only`` to merge into."""
    try:
        earlier: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in earlier.get("scenarios", {}).items() if v.get("mode") == mode}


def _as_json(
    result: Scenario, mode: str, seconds: float, load: float, commit: str
) -> dict[str, Any]:
    return {
        "commit": commit,
        "number": result.number,
        "title": result.title,
        "settings": result.settings,
        "mode": mode,
        "measured_at": _now(),
        "duration_s": seconds,
        "load_1m_before": load,  # other work on the machine skews every figure
        "skipped": result.skipped,
        "problems": result.problems,
        "metrics": [m.as_dict() for m in result.metrics],
        "runs": [asdict(r) for r in result.runs],
    }


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    doc = (__doc__ or "").splitlines()
    parser = argparse.ArgumentParser(
        description=doc[0] if doc else None,
        epilog="\n".join(doc[2:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a tenth of the rows: a smoke run")
    parser.add_argument(
        "--only", type=int, choices=sorted(SCENARIOS), action="append", help="scenario number"
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=ROOT / "bench-out",
        help="manifests, fixtures, logs and ledgers (default: bench-out/, git-ignored)",
    )
    parser.add_argument("--keep-images", action="store_true", help="keep the generated images")
    parser.add_argument(
        "--md", type=Path, help="Markdown output (default: docs/; with --quick: the work dir)"
    )
    parser.add_argument("--json", type=Path, help="JSON output (same defaults as --md)")
    args = parser.parse_args(argv)
    # A smoke run must not overwrite the published figures unless asked to.
    outputs = args.work / "benchmarks-quick" if args.quick else DOCS / "benchmarks"
    args.md = args.md or outputs.with_suffix(".md")
    args.json = args.json or outputs.with_suffix(".json")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    bench = Bench(args.work, quick=args.quick, keep_images=args.keep_images)
    numbers = sorted(set(args.only or SCENARIOS))
    scenarios = _earlier_scenarios(args.json, bench.mode) if args.only else {}
    started = time.perf_counter()
    progress(f"nanobatch bench ({bench.mode}): scenarios {numbers}, working in {args.work}")
    for number in numbers:
        progress(f"[{number}] {SCENARIOS[number].__name__.removeprefix('scenario_')}")
        t0, load, commit = time.perf_counter(), os.getloadavg()[0], _commit()
        result = SCENARIOS[number](bench)
        result.problems += _problems(result.runs)
        seconds = time.perf_counter() - t0
        scenarios[str(number)] = _as_json(result, bench.mode, seconds, load, commit)
        progress(f"    done in {time.perf_counter() - t0:.0f} s")
    report = {
        "generated_at": _now(),
        "mode": bench.mode,
        "duration_s": time.perf_counter() - started,
        "machine": machine_info(),
        "scenarios": scenarios,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    markdown = render_markdown(report, _kept_notes(args.md))
    args.md.write_text(markdown, encoding="utf-8")
    print(markdown)
    progress(f"wrote {args.md} and {args.json} in {report['duration_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
