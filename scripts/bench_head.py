"""The head-to-head scenarios: nanobatch and the baseline on the same manifest, the same
emulator settings and the same concurrency, one after the other (see ``bench.py``).

1. latency-bound: throughput against the limit concurrency / latency;
2. CPU-bound: client CPU per image;
3. memory: peak RSS at 4K;
4. quota: achieved / allowed rate and the share of 429s in a time box.

Client CPU per image is also given as a multiple of the floor (``scripts/floor.py``: parse,
decode, hash and write one image of the same size, no HTTP), beside the ratio to the SDK.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import emulator_throughput
from bench_clients import ClientRun, images_within, slug
from bench_model import QUICK_SCALE, Bench, Metric, Scenario, cpu_ms
from measure import Emulator, emulator

from pipeline.core.models import DEFAULT_MODEL

# Issue 16's target for client CPU per image: either holds.
CPU_VS_BASELINE, CPU_VS_FLOOR = 0.5, 2.0


def _per_s(rows: int, seconds: float | None) -> float | None:
    return rows / seconds if seconds else None


def _process_metrics(nb: ClientRun, base: ClientRun) -> list[Metric]:
    return [
        Metric("wall time", "s", nb.figures.wall_s, base.figures.wall_s),
        Metric("client CPU (user+sys)", "s", nb.figures.cpu_s, base.figures.cpu_s),
        Metric("peak RSS", "MB", nb.figures.peak_rss_mb, base.figures.peak_rss_mb),
    ]


_OF_ROUNDS = " (the median of the rounds)"


def cpu_per_image(bench: Bench, size: str, nb: ClientRun, base: ClientRun) -> list[Metric]:
    """Whole-process client CPU per image written, against the baseline and against the floor
    for the same size (start-up and the final flush included, spread over the rows)."""
    nb_ms, base_ms = cpu_ms(nb), cpu_ms(base)
    floor_ms = bench.floor_ms(size)
    pairs = bench.rounds_of(nb)
    each = [cpu_ms(a) / cpu_ms(b) for a, b in pairs]
    # With --rounds the gate is the median of the paired ratios: two medians from different
    # rounds would bring back the drift between runs that pairing cancels.
    ratio = statistics.median(each) if len(pairs) > 1 else nb_ms / base_ms
    rounds = [
        Metric(
            f"client CPU per image, nanobatch / baseline in each of {len(pairs)} rounds "
            "(alternating which ran first); the median",
            "x",
            statistics.median(each),
            limit=", ".join(f"{r:.2f}x" for r in each),
            show_ratio=False,
        )
    ]
    return [
        Metric(
            "client CPU per image (user+sys)",
            "ms",
            nb_ms,
            base_ms,
            limit=f"floor {floor_ms:.2f} ms",
            floor=f"<= {CPU_VS_BASELINE}x baseline{_OF_ROUNDS * (len(pairs) > 1)}, "
            f"or <= {CPU_VS_FLOOR:g}x the floor",
            met=ratio <= CPU_VS_BASELINE or nb_ms <= CPU_VS_FLOOR * floor_ms,
        ),
        Metric(
            f"client CPU per image / the floor ({size}, scripts/floor.py)",
            "x",
            nb_ms / floor_ms,
            base_ms / floor_ms,
            show_ratio=False,
        ),
        *(rounds if len(pairs) > 1 else []),
        *_durable_reference(bench, size, nb),
    ]


def _durable_reference(bench: Bench, size: str, nb: ClientRun) -> list[Metric]:
    """``scripts/durable_client.py`` in the same rounds: the CPU per image of a bare client that
    makes its images and records durable as nanobatch does, and does nothing else; what is
    above it is nanobatch's own per-row work."""
    refs = bench.references_of(nb)
    if not refs:
        return []
    each = [cpu_ms(ref) / cpu_ms(base) for ref, _, base in refs]
    ref_ms = statistics.median(cpu_ms(ref) for ref, _, _ in refs)
    return [
        Metric(
            "a bare crash-safe client: scripts/durable_client.py "
            "(aiohttp, orjson, pybase64; temp file, fsync, rename; group-committed records; "
            "no provenance records, classification, retries, ledger or logs), CPU per image; "
            f"its ratio to the baseline, the median of {len(refs)} round(s)",
            "ms",
            ref_ms,
            limit=f"{statistics.median(each):.2f}x the baseline ("
            + ", ".join(f"{r:.2f}x" for r in each)
            + f"); {ref_ms / bench.floor_ms(size):.2f}x the floor",
        ),
        Metric(
            "nanobatch / that client, CPU per image (what nanobatch's own per-row work costs: "
            "provenance records, classification, the spend, the attempt history, logs, "
            "the in-flight notes, start-up)",
            "x",
            statistics.median(cpu_ms(a) / cpu_ms(ref) for ref, a, _ in refs),
            show_ratio=False,
        ),
    ]


# --- scenarios -----------------------------------------------------------------------------


def scenario_latency(bench: Bench) -> Scenario:
    # 5,000 rows: at the limit that is ~20 s of sending, so interpreter start-up and imports
    # (a fixed cost of each process) weigh a few percent, not a third.
    rows, concurrency, size, latency = bench.scaled(5000), 64, "512", 0.25
    limit = concurrency / latency
    bench.floor_ms(size)  # measured now, while no emulator competes for the CPU
    result = Scenario(
        1,
        "latency-bound",
        f"emulator latency {latency} s, concurrency {concurrency}, {rows} rows of {size} px",
    )
    with emulator(["--latency", str(latency)]) as emu:
        emu.warm_up(size)
        nb, base = bench.head_to_head(emu, "s1", rows, concurrency, size, reference=True)
        ceiling, bare_ms = _raw_ceiling(emu, min(rows, 3000), concurrency, size)  # ~12 s
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
        Metric(
            "the same emulator's ceiling here: a client that only reads bytes "
            "(scripts/emulator_throughput.py --client raw)",
            "rows/s",
            ceiling,
            limit=f"{ceiling / limit:.3f} of {limit:.0f} rows/s",
        ),
        *_reference_rate(bench, nb, limit),
        *_process_metrics(nb, base),
        *cpu_per_image(bench, size, nb, base),
        *_bare_client(bench, size, bare_ms),
    ]
    return result


def _reference_rate(bench: Bench, nb: ClientRun, limit: float) -> list[Metric]:
    """The bare crash-safe client's throughput in the same rounds: what a client that makes
    its images and records durable, and does nothing else, reaches on this emulator."""
    refs = bench.references_of(nb)
    if not refs:
        return []
    rate = statistics.median(ref.succeeded / ref.figures.wall_s for ref, _, _ in refs)
    return [
        Metric(
            "the bare crash-safe client (scripts/durable_client.py), rows/s, whole process; "
            f"the median of {len(refs)} round(s)",
            "rows/s",
            rate,
            limit=f"{rate / limit:.3f} of {limit:.0f} rows/s",
        )
    ]


def _bare_client(bench: Bench, size: str, bare_ms: float) -> list[Metric]:
    """What receiving an answer costs a client that does nothing else with it, and that plus
    the floor: the least CPU per image any client pays here, HTTP included."""
    floor_ms = bench.floor_ms(size)
    return [
        Metric(
            "CPU per answer of the client that only reads bytes (HTTP and nothing else)",
            "ms",
            bare_ms,
        ),
        Metric(
            "the floor + that: the least CPU per image with HTTP (in floors)",
            "x",
            (floor_ms + bare_ms) / floor_ms,
            limit=f"{floor_ms + bare_ms:.2f} ms",
        ),
    ]


def _raw_ceiling(emu: Emulator, requests: int, concurrency: int, size: str) -> tuple[float, float]:
    """Answers per second from ``emu`` to a client that parses nothing and writes nothing: what
    no client can beat on this machine, with the emulator on the same two cores; and that
    client's CPU per answer (ms), the HTTP part of any client's CPU. It runs in this process,
    which does nothing else meanwhile (the emulator is a process of its own)."""
    args = argparse.Namespace(
        model=DEFAULT_MODEL, client="raw", concurrency=concurrency, repeat=False, image_size=size
    )
    cpu = time.process_time()
    elapsed, _ = anyio.run(emulator_throughput.load, emu.base_url, args, requests)
    return requests / elapsed, 1000 * (time.process_time() - cpu) / requests


def _no_latency(
    bench: Bench,
    number: int,
    name: str,
    *,
    rows: int,
    concurrency: int,
    size: str,
    reference: bool = False,
) -> tuple[Scenario, ClientRun, ClientRun]:
    """A scenario whose emulator answers at once: both clients' runs, one after the other."""
    bench.floor_ms(size)  # measured now, while no emulator competes for the CPU
    result = Scenario(
        number, name, f"emulator latency 0, concurrency {concurrency}, {rows} rows of {size}"
    )
    with emulator(["--latency", "0"]) as emu:
        emu.warm_up(size)
        nb, base = bench.head_to_head(
            emu, f"s{number}", rows, concurrency, size, reference=reference
        )
    result.runs += [nb, base]
    return result, nb, base


def scenario_cpu(bench: Bench) -> Scenario:
    size, concurrency = "1K", 16
    result, nb, base = _no_latency(
        bench,
        2,
        "CPU-bound",
        rows=bench.scaled(1000),
        concurrency=concurrency,
        size=size,
        reference=True,
    )
    with emulator(["--latency", "0"]) as emu:
        emu.warm_up(size)
        _, bare_ms = _raw_ceiling(emu, bench.scaled(1000), concurrency, size)  # ~5 s
    emu_ms = [
        1000 * run.emulator_cpu_s / run.succeeded if run.emulator_cpu_s and run.succeeded else None
        for run in (nb, base)
    ]
    result.metrics += [
        *cpu_per_image(bench, size, nb, base),
        Metric(
            "rows/s, whole process",
            "rows/s",
            nb.succeeded / nb.figures.wall_s,
            base.succeeded / base.figures.wall_s,
        ),
        *_process_metrics(nb, base),
        Metric("emulator CPU per image (not the client's)", "ms", emu_ms[0], emu_ms[1]),
        *_bare_client(bench, size, bare_ms),
    ]
    return result


def scenario_memory(bench: Bench) -> Scenario:
    size = "4K"
    result, nb, base = _no_latency(
        bench, 3, "memory", rows=bench.scaled(300), concurrency=32, size=size
    )
    nb_mb, base_mb = (
        bench.median_figure(nb, "peak_rss_mb"),
        bench.median_figure(base, "peak_rss_mb"),
    )
    result.metrics += [
        Metric(
            "peak RSS", "MB", nb_mb, base_mb, floor="<= 0.5x baseline", met=nb_mb <= 0.5 * base_mb
        ),
        Metric("wall time", "s", nb.figures.wall_s, base.figures.wall_s),
        Metric("client CPU (user+sys)", "s", nb.figures.cpu_s, base.figures.cpu_s),
        *cpu_per_image(bench, size, nb, base),
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
