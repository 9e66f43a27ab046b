"""Scenario 9: peak RSS at 4K with the answers in flight at once (issue 16's memory floors).

The emulator holds every answer 0.5 s, so a client keeps ``concurrency`` 4K answers (~25 MB of
JSON each) in flight at once; run at concurrency 16 and 64 on the same manifest size per
request in flight (three rounds), nanobatch and the baseline side by side. What an extra request
in flight costs is the difference of the two peaks over the 48 extra requests: it is what
decides how far concurrency can go on one machine, whatever the client's fixed start-up cost.
"""

from __future__ import annotations

from bench_clients import ClientRun
from bench_model import Bench, Metric, Scenario
from measure import emulator

SIZE, LATENCY_S = "4K", 0.5
LOW, HIGH = 16, 64
ROUNDS = 3  # rows per request in flight: the peak is reached in the first


def _per_extra(bench: Bench, low: ClientRun, high: ClientRun) -> float:
    """MB of peak RSS per extra request in flight, from concurrency LOW to HIGH."""
    rss = [bench.median_figure(run, "peak_rss_mb") for run in (low, high)]
    return (rss[1] - rss[0]) / (HIGH - LOW)


def scenario_memory_latency(bench: Bench) -> Scenario:
    bench.floor_ms(SIZE)  # measured now, while no emulator competes for the CPU
    result = Scenario(
        9,
        "memory in flight",
        f"emulator latency {LATENCY_S} s, {SIZE}, concurrency {LOW} and {HIGH}, "
        f"{ROUNDS} rows per request in flight ({ROUNDS * LOW} and {ROUNDS * HIGH} rows)",
    )
    runs: dict[int, tuple[ClientRun, ClientRun]] = {}
    with emulator(["--latency", str(LATENCY_S)]) as emu:
        emu.warm_up(SIZE)
        for concurrency in (LOW, HIGH):
            # A quick run still needs a full round, or nothing is ever in flight at once.
            rows = concurrency if bench.quick else ROUNDS * concurrency
            tag = f"s9-c{concurrency}"
            runs[concurrency] = bench.head_to_head(emu, tag, rows, concurrency, SIZE)
    for concurrency, (nb, base) in runs.items():
        result.runs += [nb, base]
        nb_mb, base_mb = (
            bench.median_figure(nb, "peak_rss_mb"),
            bench.median_figure(base, "peak_rss_mb"),
        )
        result.metrics += [
            Metric(
                f"peak RSS, concurrency {concurrency}",
                "MB",
                nb_mb,
                base_mb,
                floor="<= 0.5x baseline",
                met=nb_mb <= 0.5 * base_mb,
            ),
            Metric(
                f"client CPU per image, concurrency {concurrency}",
                "ms",
                1000 * nb.figures.cpu_s / max(nb.succeeded, 1),
                1000 * base.figures.cpu_s / max(base.succeeded, 1),
            ),
        ]
    (nb_low, base_low), (nb_high, base_high) = runs[LOW], runs[HIGH]
    extra = _per_extra(bench, nb_low, nb_high)
    result.metrics.append(
        Metric(
            f"peak RSS per extra 4K request in flight ({LOW} -> {HIGH})",
            "MB",
            extra,
            _per_extra(bench, base_low, base_high),
            floor="<= 2 MB",
            met=extra <= 2.0,
        )
    )
    return result
