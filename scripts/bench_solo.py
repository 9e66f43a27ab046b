"""The scenarios nanobatch runs alone (no baseline does the same job): resume, streaming
validate, the journal fold, and the hostile fault mix (see ``bench.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import fold_scale
from bench_clients import terminal_rows
from bench_fixtures import write_done_ledger
from bench_model import Bench, Metric, Scenario
from measure import ROOT, emulator, progress, run_measured

HOSTILE_TIMEOUT_S = 5400.0  # before the fix this scenario took over an hour: measure it whole


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
