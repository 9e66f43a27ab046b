"""The batch scenarios (issue 15's result path, measured for issue 16): a finished job's
result file downloaded as a stream and read line by line through the online classifier, in a
child process measured whole (``scripts/batch_scale.py``): MB/s of each phase and peak RSS,
which must not depend on the file's size.

10. batch results: ~256 MB of 4K result lines (runs by default: a few seconds of work).
11. batch results, multi-GB (``--full``): ~3 GB, the size a job of ~120 4K images returns.
"""

from __future__ import annotations

import json
import os
import sys

import batch_scale
from bench_model import Bench, Metric, Scenario
from measure import ROOT, emulator, progress, run_measured

MB = 10**6
RSS_FLOOR_MB = 300  # issue 15: a multi-GB result file folded with peak RSS under 300 MB
TIMEOUT_S = 1800.0


def scenario_batch(bench: Bench) -> Scenario:
    return _scenario(bench, 10, bench.scaled(256) * MB)


def scenario_batch_large(bench: Bench) -> Scenario:
    return _scenario(bench, 11, bench.scaled(3000) * MB)


def _scenario(bench: Bench, number: int, target: int) -> Scenario:
    result = Scenario(
        number,
        f"batch results, {target / MB:,.0f} MB",
        f"emulator --batch-delay 0; a finished job of 4K requests with ~{target / MB:,.0f} MB of "
        "result lines; a child (`scripts/batch_scale.py`) streams the result file to disk "
        "through the batch route's `download_results` over loopback, then reads every line "
        "through `read_result_line` (JSON, base64, the online classifier)",
    )
    work = bench.work / f"s{number}"
    dest, figures_path, log = work / "results.jsonl", work / "figures.json", work / "child.log"
    with emulator(["--batch-delay", "0"]) as emu:
        progress(f"    preparing a job with ~{target / MB:,.0f} MB of results")
        job, size = batch_scale.prepare(emu.base_url, target, work)
        argv = [
            sys.executable,
            str(ROOT / "scripts" / "batch_scale.py"),
            emu.base_url,
            job,
            str(dest),
            str(figures_path),
        ]
        progress(f"    downloading and reading {size / MB:,.0f} MB")
        cpu_before = emu.cpu_s()
        figures = run_measured(argv, env=dict(os.environ), log_path=log, timeout_s=TIMEOUT_S)
        cpu_after = emu.cpu_s()
    dest.unlink(missing_ok=True)  # gigabytes: not kept
    if figures.exit_code != 0:
        result.problems.append(f"batch_scale.py exited with code {figures.exit_code} ({log})")
        return result
    measured = json.loads(figures_path.read_text(encoding="utf-8"))
    megabytes = measured["bytes"] / MB
    rss = figures.peak_rss_mb
    emulator_cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    result.metrics += [
        Metric("result file", "MB", megabytes),
        Metric("download to disk", "MB/s", megabytes / measured["download_s"]),
        Metric("read every line (parse, decode, classify)", "MB/s", megabytes / measured["read_s"]),
        Metric(
            "download + read",
            "MB/s",
            megabytes / (measured["download_s"] + measured["read_s"]),
        ),
        Metric("peak RSS", "MB", rss, floor=f"< {RSS_FLOOR_MB} MB", met=rss < RSS_FLOOR_MB),
        Metric("client CPU (user+sys)", "s", figures.cpu_s),
        Metric("wall time (whole child)", "s", figures.wall_s),
        Metric("emulator CPU (serving the file)", "s", emulator_cpu),
        Metric("lines read", "n", measured["lines"]),
        Metric("images decoded", "n", measured["images"]),
    ]
    if measured["images"] != measured["lines"]:
        result.problems.append(f"{measured['lines']} lines gave {measured['images']} images")
    return result
