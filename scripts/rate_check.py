"""Measure how much of a per-minute quota nanobatch uses, and how often it trips over it.

Against an emulator that enforces ``--rpm 600`` with a sliding window, two 60-second runs:
the client with ``--rpm 600`` (a smooth limiter), and the client with no ``--rpm`` (adaptive
concurrency and the server's 429 delays only). Figures come from ``attempts.parquet``: the
requests started in the first 60 s after the first one.

Run: ``uv run python scripts/rate_check.py [--rpm 600] [--seconds 60]``
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline.emulator import EmulatorProcess


def measure(rpm: int, seconds: int, client_rpm: int | None, work: Path) -> dict[str, Any]:
    """One timed run; returns the figures."""
    manifest = work / "m.csv"
    rows = int(rpm * seconds / 60 * 1.5) + 64  # more than the quota allows in the window
    with open(manifest, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "prompt"])
        writer.writerows([f"r{i:05d}", f"a product photo {i}"] for i in range(rows))
    out = work / ("rpm" if client_rpm else "adaptive")
    args = ["--rpm", str(rpm), "--latency", "0.05", "--seed", "1"]
    with EmulatorProcess(args) as emulator:
        command = [
            sys.executable, "-m", "pipeline", "run", str(manifest), "--out", str(out),
            "--base-url", emulator.base_url, "--concurrency", "32", "--image-size", "512",
            "--stop-after", f"{seconds + 2}s",
        ]  # fmt: skip
        if client_rpm:
            command += ["--rpm", str(client_rpm)]
        env = {**os.environ, "GEMINI_API_KEY": "rate-check"}
        subprocess.run(command, env=env, capture_output=True, check=False, timeout=seconds * 3)
    attempts = pq.read_table(out / "attempts.parquet").to_pylist()
    start = min(a["started_at"] for a in attempts)
    window = [a for a in attempts if a["started_at"] < start + timedelta(seconds=seconds)]
    ok = sum(a["http_status"] == 200 for a in window)
    limited = sum(a["http_status"] == 429 for a in window)
    allowed = rpm * seconds / 60
    return {
        "client": f"--rpm {client_rpm}" if client_rpm else "adaptive (no --rpm)",
        "requests": len(window),
        "answered_200": ok,
        "answered_429": limited,
        "share_429": round(limited / len(window), 4) if window else 0.0,
        "allowed": allowed,
        "achieved_share_of_allowed": round(ok / allowed, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rpm", type=int, default=600)
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for client_rpm in (args.rpm, None):
            work = Path(tmp) / ("rpm" if client_rpm else "adaptive")
            work.mkdir()
            results.append(measure(args.rpm, args.seconds, client_rpm, work))
            print(json.dumps(results[-1]), flush=True)
    print("| client | requests | 200 | 429 | share of 429 | share of allowed rate |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['client']} | {r['requests']} | {r['answered_200']} | {r['answered_429']} | "
              f"{r['share_429']:.1%} | {r['achieved_share_of_allowed']:.1%} |")  # fmt: skip


if __name__ == "__main__":
    main()
