"""The benchmark's report: docs/benchmarks.md, written from the JSON figures.

The table has one line per metric (nanobatch, the baseline, their ratio, the limit and the
floor); then each scenario's settings, the client runs that fell short, how everything was
measured, and the hand-written analysis below ``NOTES_MARKER``, kept when the file is rewritten.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

# Everything after this line in docs/benchmarks.md is hand-written and kept by regeneration.
NOTES_MARKER = "<!-- hand-written analysis below this line is kept when scripts/bench rewrites -->"


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "n":
        return f"{value:,.0f}"
    if unit == "%":
        return f"{value:.1f}%"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "x":
        return f"{value:.2f}x"
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
JSON line per row). By default the baseline runs in an environment of its own that
`scripts/bench` builds with `google-genai[aiohttp]` (the SDK's fastest documented setup: it
then sends through aiohttp), the same google-genai version as the project's; `--baseline plain`
runs it in the project's environment instead (no aiohttp). Every figure is whole-process, from
spawn to exit, as the kernel counted it for the child (`os.wait4`): wall time, user+sys CPU,
peak RSS (`ru_maxrss`; MB = 10^6 bytes). The emulator's CPU is read from `/proc` and never
counted as a client's. *Rows/s, whole process* divides the images written by the wall time,
interpreter start and final flush included; *send phase* divides them by the time from the
first request sent to the last answer received, from each client's own records
(`attempts.parquet`, `results.jsonl`). The quota scenario stops each client with SIGINT 60 s
after the emulator saw its first request. The emulator's window starts empty, so the first 60 s
hold exactly one minute's quota (1,200 requests) whether a client spends it in a burst or
evenly: *achieved / allowed* is the number of images a client received within 60 s of its first
request (from its own records) over 1,200, and the share of 429s is the emulator's count at the
deadline. *The floor* of client CPU per image is `scripts/floor.py`'s figure for the same size,
measured in the harness before the scenario's emulator starts: parse a real emulator answer,
decode the image's base64, hash it, write and fsync it, no HTTP (the best of several rounds).
Each scenario runs once, on a machine that may be doing other work: expect 15-30% of noise in
a single pair. With `--rounds N` the head-to-head scenarios (1-3, 9) run both clients N times,
alternating which goes first; each client's figures are then its run with the median CPU per
image, and in 1-3 a line gives every round's ratio (the settings below say which runs did).
Scenarios 1 and 2 also run a third client in each round, `scripts/durable_client.py`: a bare
client that keeps nanobatch's durability rules and does nothing else (aiohttp, orjson, pybase64
and sha256; each image written to a temp file, fsynced, let go of the page cache and renamed;
the records group-committed after the folder's fsync; no classification, retries, ledger,
provenance or logs). Its CPU per image is the yardstick for what nanobatch's own per-row work
costs on this machine."""


_BASELINE_KINDS = {
    "aiohttp": "its own environment with `google-genai[aiohttp]`, the SDK's fastest documented "
    "setup",
    "plain": "the project's environment, google-genai without aiohttp",
}


def describe_baseline(baseline: dict[str, Any]) -> str:
    """The baseline's setup in words: the SDK, the transport it used, the environment."""
    setup = baseline.get("setup") or {}
    kind = baseline.get("kind", "?")
    sdk = setup.get("sdk", "google-genai")
    transport = setup.get("transport", "a transport it did not report")
    where = _BASELINE_KINDS.get(kind, kind)
    return f"{sdk} sending through {transport} (`--baseline {kind}`: {where})"


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
        f"Baseline: {describe_baseline(report.get('baseline', {}))}.",
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
        f"Python {machine['python']}, "
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
    if floors := report.get("floors"):
        each = ", ".join(
            f"{size}: {f['cpu_ms']:.2f} ms ({f['answer_bytes'] / 1e6:.1f} MB answer)"
            for size, f in floors.items()
        )
        lines += ["", f"The CPU floor per image (`scripts/floor.py`, this run): {each}."]
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


def kept_notes(path: Path) -> str:
    """The hand-written part of an earlier docs/benchmarks.md (empty if none)."""
    with contextlib.suppress(OSError):
        _, marker, notes = path.read_text(encoding="utf-8").partition(NOTES_MARKER)
        return notes if marker else ""
    return ""
