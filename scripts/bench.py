"""Benchmark nanobatch against a loop around the official SDK (``scripts/baseline_sdk.py``).

Each scenario starts the emulator as a separate process on loopback, then runs each client on
the same manifest, with the same emulator settings and the same concurrency, as a child process
measured whole (wall time, user+sys CPU, peak RSS; see ``measure.py``). The emulator's counters
are reset between clients and its own CPU is reported apart, never counted as the client's.
The baseline runs by default in its own environment with ``google-genai[aiohttp]``, built once
(``baseline_env.py``); client CPU per image is set against the SDK's and against the floor of
``scripts/floor.py`` for the same size.

    scripts/bench                 # all but 8 and 11, full size, ~10 minutes (docs/benchmarks.*)
    scripts/bench --full          # also the long ones (8: the hostile fault mix, ~8 minutes;
                                  # 11: a multi-GB batch result file)
    scripts/bench --quick         # rows and time boxes / 10: a smoke run (bench-out/)
    scripts/bench --only 4        # one scenario, merged into the results of an earlier run
    scripts/bench --only 2 --rounds 3   # three head-to-head pairs, alternating order: each
                                  # client's median run, and every round's ratio
    scripts/bench --baseline plain   # the SDK in the project's environment (no aiohttp)

Scenarios (full size):

1. latency-bound: emulator latency 0.25 s, concurrency 64, 5,000 rows of 512 px (start-up
   amortised). Limit 64 / 0.25 = 256 rows/s.
2. CPU-bound: latency 0, concurrency 16, 1,000 rows of 1K: client CPU per image.
3. memory: latency 0, concurrency 32, 300 rows of 4K: peak RSS of the client.
4. quota: emulator ``--rpm 1200``, each client stopped 60 s after its first request:
   achieved / allowed rate, share of 429s.
5. resume: a 1,000,000-row manifest whose rows are all done: time to exit, peak RSS.
6. streaming: ``nanobatch validate`` on a 1,000,000-row manifest: peak RSS.
7. fold: the restart after a crashed 1,000,000-row run folds 1,000,000 journal records (and
   as many attempts) into the Parquet files: peak RSS and time of a child that only folds.
8. hostile mix (``--full``): 600 rows of 512 px, concurrency 32, emulator latency uniform
   0.2-0.5 s and a fault mix of 30% 429s, 25% 5xx, resets, truncated bodies, hangs and refusals
   (seed 4): the run's wall time with the default timeouts, every row terminal, no early retry.
9. memory in flight: emulator latency 0.5 s, 4K, concurrency 16 and 64 (three rows per request
   in flight): peak RSS at each, and per extra request in flight.
10. batch results: a finished batch job's ~256 MB result file (4K lines) downloaded as a stream
   and read line by line through the online classifier: MB/s and peak RSS (``bench_batch``).
11. batch results, multi-GB (``--full``): the same with ~3 GB: peak RSS under 300 MB.
12. start-up: ``nanobatch --help``, spawn to exit (median of 15): under 0.25 s.
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
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import bench_trash
from baseline_env import BASELINES, baseline_python
from bench_batch import scenario_batch, scenario_batch_large
from bench_head import scenario_cpu, scenario_latency, scenario_memory, scenario_quota
from bench_memory import scenario_memory_latency
from bench_model import Bench, Scenario, problems
from bench_report import kept_notes, render_markdown
from bench_solo import scenario_fold, scenario_hostile, scenario_resume, scenario_validate
from bench_startup import scenario_startup
from measure import ROOT, progress

DOCS = ROOT / "docs"

SCENARIOS: dict[int, Callable[[Bench], Scenario]] = {
    1: scenario_latency,
    2: scenario_cpu,
    3: scenario_memory,
    4: scenario_quota,
    5: scenario_resume,
    6: scenario_validate,
    7: scenario_fold,
    8: scenario_hostile,
    9: scenario_memory_latency,
    10: scenario_batch,
    11: scenario_batch_large,
    12: scenario_startup,
}
# Run only with --full (or --only): together they would take the default past ten minutes.
LONG = frozenset({8, 11})


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
        "nanobatch": importlib.metadata.version("nanobatch"),
        "commit": _commit(),
    }


def _commit() -> str:
    """The code being measured (others may commit or edit between scenarios)."""
    dirty = _git("status", "--porcelain", "--", "pipeline")
    return _git("rev-parse", "--short", "HEAD") + (
        " with uncommitted changes in pipeline/" if dirty else ""
    )


def _earlier(path: Path, mode: str, baseline: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Scenarios (and floors) of an earlier run of the same size against the same baseline,
    for ``--only`` to merge into."""
    try:
        earlier: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}, {}
    if earlier.get("baseline", {}).get("kind", "plain") != baseline:
        return {}, {}
    kept = {k: v for k, v in earlier.get("scenarios", {}).items() if v.get("mode") == mode}
    return kept, earlier.get("floors", {})


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


def _baseline_setup(scenarios: dict[str, Any]) -> dict[str, Any]:
    """What the baseline said about itself (SDK, transport) in the first run that said it."""
    for scenario in scenarios.values():
        for run in scenario.get("runs", []):
            if run.get("setup"):
                return dict(run["setup"])
    return {}


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
    parser.add_argument("--full", action="store_true", help="also the long scenarios (8, 11)")
    parser.add_argument(
        "--only", type=int, choices=sorted(SCENARIOS), action="append", help="scenario number"
    )
    parser.add_argument(
        "--baseline",
        choices=BASELINES,
        default="aiohttp",
        help="the SDK with aiohttp in its own environment (default), or plain (no aiohttp)",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=ROOT / "bench-out",
        help="manifests, fixtures, logs and ledgers (default: bench-out/, git-ignored)",
    )
    parser.add_argument("--keep-images", action="store_true", help="keep the generated images")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="head-to-head pairs per measurement, alternating which client runs first; the "
        "figures are each client's median run (default 1: the default run stays short)",
    )
    parser.add_argument(
        "--md", type=Path, help="Markdown output (default: docs/; with --quick: the work dir)"
    )
    parser.add_argument("--json", type=Path, help="JSON output (same defaults as --md)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.rounds % 2 == 0:
        parser.error("--rounds takes an odd number (a median of an even count is no one run)")
    # A smoke run must not overwrite the published figures unless asked to.
    outputs = args.work / "benchmarks-quick" if args.quick else DOCS / "benchmarks"
    args.md = args.md or outputs.with_suffix(".md")
    args.json = args.json or outputs.with_suffix(".json")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    python = baseline_python(args.baseline)
    bench = Bench(
        args.work,
        quick=args.quick,
        keep_images=args.keep_images,
        baseline=python,
        rounds=args.rounds,
    )
    default = [n for n in SCENARIOS if args.full or n not in LONG]
    numbers = sorted(set(args.only or default))
    scenarios, floors = _earlier(args.json, bench.mode, args.baseline) if args.only else ({}, {})
    started = time.perf_counter()
    progress(
        f"nanobatch bench ({bench.mode} size, baseline {args.baseline}): scenarios {numbers}, "
        f"working in {args.work}"
    )
    try:
        bench.warm_up()
        for number in numbers:
            progress(f"[{number}] {SCENARIOS[number].__name__.removeprefix('scenario_')}")
            t0, load, commit = time.perf_counter(), os.getloadavg()[0], _commit()
            result = SCENARIOS[number](bench)
            result.problems += problems(bench.every_run(result.runs))  # every round's
            if result.runs and len(pairs := bench.rounds_of(result.runs[0])) > 1:
                reference = ""
                if bench.references_of(result.runs[0]):
                    reference = " (and the bare crash-safe client, in each place in turn)"
                result.settings += (
                    f"; {len(pairs)} rounds of both clients, alternating which ran first"
                    f"{reference}: each client's figures are from its run with the median CPU "
                    "per image"
                )
            seconds = time.perf_counter() - t0
            scenarios[str(number)] = _as_json(result, bench.mode, seconds, load, commit)
            progress(f"    done in {time.perf_counter() - t0:.0f} s")
    finally:
        bench_trash.empty()  # after the last measured client, or a failed one (see bench_trash)
    report = {
        "generated_at": _now(),
        "mode": bench.mode,
        "duration_s": time.perf_counter() - started,
        "machine": machine_info(),
        "baseline": {
            "kind": args.baseline,
            "python": str(python),
            "setup": _baseline_setup(scenarios),
        },
        "floors": floors | bench.floors,
        "scenarios": scenarios,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    markdown = render_markdown(report, kept_notes(args.md))
    args.md.write_text(markdown, encoding="utf-8")
    print(markdown)
    progress(f"wrote {args.md} and {args.json} in {report['duration_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
