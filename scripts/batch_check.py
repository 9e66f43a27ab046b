"""Batch mode at scale, end to end, as a user runs it: 1,000 rows (plain prompts, edits of a
photo, refusal triggers, an error line once) through ``nanobatch run --mode batch`` against an
emulator process with a job fault mix (expired, failed, late and long-id result files, error
lines), then ``nanobatch verify``. It checks what issue 15 asks of such a run: every row
terminal, images verified, 0 billed duplicates, and the ledger's cost equal to what the
emulator billed at the batch price. Too slow for the suite (the suite runs the same path on
200 rows, ``tests/test_batch_run.py``); exits 1 if any check fails.

Run: ``uv run python scripts/batch_check.py [--rows 1000]``
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.emulator import EmulatorProcess
from pipeline.emulator.mixes import fault_mix_rows

PHOTO = Path(__file__).resolve().parent.parent / "manifests" / "images"
FAULTS = "expire=0.1,fail=0.1,late_file=0.1,long_id=0.1,line_error=0.02"


def write_manifest(path: Path, rows: int) -> None:
    photo = sorted(PHOTO.iterdir())[0]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, ["id", "prompt", "images"])
        writer.writeheader()
        writer.writerows(fault_mix_rows(rows, photo, digits=5))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        manifest, out = work / "m.csv", work / "out"
        write_manifest(manifest, args.rows)
        emulator_args = [
            "--seed", "15", "--batch-delay", "uniform:120-1800", "--time-scale", "0.001",
            "--batch-faults", FAULTS,
        ]  # fmt: skip
        env = {**os.environ, "GEMINI_API_KEY": "batch-check", "NANOBATCH_BATCH_POLL_S": "0.2"}
        with EmulatorProcess(emulator_args) as emulator:
            started = time.perf_counter()
            run = subprocess.run(
                [sys.executable, "-m", "pipeline", "run", str(manifest), "--out", str(out),
                 "--base-url", emulator.base_url, "--mode", "batch", "--image-size", "512"],
                env=env, capture_output=True, text=True, check=False, timeout=900,
            )  # fmt: skip
            wall = time.perf_counter() - started
            stats = emulator.stats()
        verify = subprocess.run(
            [sys.executable, "-m", "pipeline", "verify", str(out)],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        ledger = pq.read_table(out / "ledger.parquet").to_pylist()
    statuses: dict[str, int] = {}
    for row in ledger:
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    cost = sum(row["cost_usd"] or 0.0 for row in ledger)
    billed = float(stats["billed_usd"])
    checks = {
        # 1: some rows failed (a job that expired in every round fails its rows, by design)
        "run exit 0, or 1 with failed rows": run.returncode == (1 if "failed" in statuses else 0),
        "every row terminal": len(ledger) == args.rows
        and set(statuses) <= {"succeeded", "refused", "failed"},
        "images verified": verify.returncode == 0,
        "0 billed duplicates": stats["billed_duplicates"] == 0,
        "nothing online": stats["billed"] == 0,
        "ledger cost == billed": abs(cost - billed) < 1e-6,
    }
    figures = {
        "rows": args.rows,
        "wall_s": round(wall, 1),
        "statuses": statuses,
        "jobs_created": stats["batch_jobs_created"],
        "ledger_usd": round(cost, 4),
        "billed_usd": round(billed, 4),
        "billed_duplicates": stats["billed_duplicates"],
        "checks": checks,
    }
    print(json.dumps(figures, indent=1))
    if not all(checks.values()):
        print(run.stdout[-2000:], run.stderr[-2000:], verify.stdout[-1000:], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
