"""Issue 16's HTTP stack comparison: the same ``nanobatch run`` on each stack of
``http_stacks.py``, side by side against one emulator per scenario, repeated in rotating order.

    uv run python scripts/bench_http.py                      # every stack, 3 rounds
    uv run python scripts/bench_http.py --rounds 2 --only latency --stacks httpx,aiohttp

The machine is shared and noisy, so each round runs every stack back to back (a rotating order,
so no stack always goes first) and each figure is reported with its ratio to httpx *in the same
round*; the table gives the median over rounds and the spread (lowest-highest). Raw runs go to
``WORK/bench-http.json``; the table to stdout. Every row asks for the same image, which the
emulator then serves from its cache: this compares clients, and on two cores an emulator drawing
distinct 4K images would be the bottleneck. Scenarios (bench.py's, smaller where the figure
settles sooner):

- latency: emulator latency 0.25 s, concurrency 64, 512 px: rows/s against 64 / 0.25 = 256;
- cpu-512, cpu-1K: latency 0, concurrency 16: client CPU per image;
- 4K: latency 0, concurrency 32: client CPU per image and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import bench_trash
from bench_clients import ClientRun, Clients
from http_stacks import STACKS
from measure import ROOT, emulator, progress


@dataclass(frozen=True, slots=True)
class Setting:
    size: str
    concurrency: int
    latency: float
    rows: int


SETTINGS = {
    "latency": Setting("512", 64, 0.25, 3000),
    "cpu-512": Setting("512", 16, 0.0, 1000),
    "cpu-1K": Setting("1K", 16, 0.0, 1000),
    "4K": Setting("4K", 32, 0.0, 150),
}
# What each scenario is read for: (label, unit, figure of one run).
FIGURES: dict[str, list[tuple[str, str, str]]] = {
    "latency": [("rows/s, whole process", "rows/s", "rate"), ("CPU per image", "ms", "cpu_ms")],
    "cpu-512": [("CPU per image", "ms", "cpu_ms")],
    "cpu-1K": [("CPU per image", "ms", "cpu_ms")],
    "4K": [("CPU per image", "ms", "cpu_ms"), ("peak RSS", "MB", "rss_mb")],
}


def _figures(run: ClientRun) -> dict[str, float]:
    images = max(run.succeeded, 1)
    return {
        "rate": run.succeeded / run.figures.wall_s,
        "cpu_ms": 1000 * run.figures.cpu_s / images,
        "rss_mb": run.figures.peak_rss_mb,
        "succeeded": run.succeeded,
        "exit": run.figures.exit_code,
    }


def _one_prompt_manifest(path: Path, rows: int) -> Path:
    """``rows`` rows asking for the same image: the emulator renders it once and serves it from
    its cache, so on two cores the client, not the emulator's drawing, is what is measured."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["id,prompt", *(f"row-{i:07d},a red canvas sneaker on white" for i in range(rows))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def measure(
    work: Path, name: str, stacks: list[str], rounds: int
) -> list[dict[str, dict[str, float]]]:
    """One emulator, ``rounds`` rounds of every stack; per round, each stack's figures."""
    setting = SETTINGS[name]
    manifest = _one_prompt_manifest(work / "manifests" / f"same-{setting.rows}.csv", setting.rows)
    clients = Clients(keep_images=False)
    results: list[dict[str, dict[str, float]]] = []
    progress(f"{name}: {setting}")
    with emulator(["--latency", str(setting.latency)]) as emu:
        emu.warm_up(setting.size)
        for r in range(rounds):
            order = stacks[r % len(stacks) :] + stacks[: r % len(stacks)]
            round_: dict[str, dict[str, float]] = {}
            for stack in order:
                run = clients.nanobatch(
                    emu,
                    work / name / stack,
                    manifest,
                    rows=setting.rows,
                    concurrency=setting.concurrency,
                    image_size=setting.size,
                    client=f"{name} {stack}",
                    launcher=(str(ROOT / "scripts" / "http_stacks.py"), stack),
                )
                round_[stack] = _figures(run)
            results.append(round_)
    return results


def _band(values: list[float], unit: str) -> str:
    digits = 0 if unit in ("rows/s", "MB") else 2
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{mid:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def table(results: dict[str, list[dict[str, dict[str, float]]]], stacks: list[str]) -> str:
    """Median (spread) per stack, and its ratio to httpx in the same round (median, spread)."""
    lines = [
        "| scenario | figure | " + " | ".join(stacks) + " |",
        "|---|---|" + "---|" * len(stacks),
    ]
    for name, rounds in results.items():
        for label, unit, key in FIGURES[name]:
            cells = []
            for stack in stacks:
                values = [r[stack][key] for r in rounds]
                cell = _band(values, unit)
                if stack != "httpx" and "httpx" in stacks:
                    ratios = [r[stack][key] / r["httpx"][key] for r in rounds]
                    cell += f"; {_band(ratios, 'x')}x"
                cells.append(cell)
            lines.append(f"| {name} | {label} ({unit}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--stacks", default=",".join(STACKS), help="comma-separated")
    parser.add_argument("--only", action="append", choices=sorted(SETTINGS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=ROOT / "bench-out" / "http")
    args = parser.parse_args(argv)
    stacks = args.stacks.split(",")
    args.work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for name in args.only or list(SETTINGS):
        results[name] = measure(args.work, name, stacks, args.rounds)
        (args.work / "bench-http.json").write_text(json.dumps(results, indent=1))
        progress(table({name: results[name]}, stacks))
    print(table(results, stacks))
    settings = {name: asdict(SETTINGS[name]) for name in results}
    (args.work / "bench-http.json").write_text(json.dumps({**results, "settings": settings}))
    bench_trash.empty()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
