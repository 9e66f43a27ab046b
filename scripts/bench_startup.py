"""Scenario 12, start-up: how long ``nanobatch --help`` takes, whole process, with bytecode
cached as on a user's machine (``bench_clients.client_env``), next to what no command line can
go below: the interpreter starting with nothing to do, and importing typer alone.

Each command is timed ``ROUNDS`` times in rotating order and the median is reported, so one
moment of a busy machine does not decide a figure."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from bench_clients import client_env
from bench_model import Bench, Metric, Scenario
from measure import ROOT

ROUNDS = 15
HELP_FLOOR_S = 0.25  # issue 16's target

COMMANDS = {
    "nanobatch --help": [sys.executable, "-m", "pipeline", "--help"],
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -c 'import typer'": [sys.executable, "-c", "import typer"],
}


def _once(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, env=client_env(), capture_output=True, check=True)
    return time.perf_counter() - started


def medians(rounds: int = ROUNDS) -> dict[str, float]:
    """The median wall time of each command in ``COMMANDS`` (seconds)."""
    names = list(COMMANDS)
    for argv in COMMANDS.values():
        _once(argv)  # bytecode written, files in the page cache
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            times[name].append(_once(COMMANDS[name]))
    return {name: statistics.median(values) for name, values in times.items()}


def scenario_startup(bench: Bench) -> Scenario:
    rounds = max(ROUNDS // 3, 3) if bench.quick else ROUNDS
    result = Scenario(
        12,
        "start-up",
        f"each command run {rounds} times in rotating order with bytecode cached; the median "
        "wall time, spawn to exit",
    )
    figures = medians(rounds)
    help_s = figures["nanobatch --help"]
    result.metrics += [
        Metric(
            "nanobatch --help: wall time",
            "s",
            help_s,
            floor=f"< {HELP_FLOOR_S} s",
            met=help_s < HELP_FLOOR_S,
        ),
        Metric("python -c pass (the interpreter alone)", "s", figures["python -c pass"]),
        Metric("python -c 'import typer'", "s", figures["python -c 'import typer'"]),
    ]
    return result
