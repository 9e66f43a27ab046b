"""What a benchmark invocation is and what a scenario reports.

- ``Metric``: one line of the table (nanobatch, the baseline, their ratio, the limit and the
  floor it is held to);
- ``Scenario``: what one scenario measured, as written to the JSON file;
- ``Bench``: one invocation: its size (``--quick`` divides rows by ten), its working directory,
  its two clients, and the CPU floor per image size (``scripts/floor.py``, measured once per
  size per invocation, in this process, before the scenario's emulator starts).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import floor
from bench_clients import ClientRun, Clients, slug
from bench_fixtures import write_manifest
from measure import Emulator, emulator, progress

QUICK_SCALE = 10
_FLOOR_ROUNDS = {"quick": 2, "full": 5}


@dataclass(frozen=True, slots=True)
class Metric:
    """One line of the table; the ratio is always nanobatch / baseline."""

    name: str
    unit: str  # how values print: "rows/s", "s", "MB", "ms", "%", "n", "x"
    nanobatch: float | None
    baseline: float | None = None
    limit: str = ""
    floor: str = ""  # the target, in words
    met: bool | None = None  # None: no floor on this line
    show_ratio: bool = True  # False where the two values are already ratios

    def as_dict(self) -> dict[str, Any]:
        ratio = None
        if self.show_ratio and self.nanobatch is not None and self.baseline:
            ratio = self.nanobatch / self.baseline
        return {**asdict(self), "ratio": ratio}


@dataclass(slots=True)
class Scenario:
    """What one scenario measured, as written to the JSON file."""

    number: int
    title: str
    settings: str
    metrics: list[Metric] = field(default_factory=list)
    runs: list[ClientRun] = field(default_factory=list)
    skipped: str | None = None
    problems: list[str] = field(default_factory=list)  # client runs that fell short


class Bench:
    """One benchmark invocation: its size, its working directory and its clients."""

    def __init__(
        self, work: Path, *, quick: bool, keep_images: bool, baseline: Path, rounds: int = 1
    ) -> None:
        self.work = work
        self.quick = quick
        self.mode = "quick" if quick else "full"
        self.clients = Clients(keep_images=keep_images, baseline_python=baseline)
        self.floors: dict[str, dict[str, float]] = {}  # by size: floor.floors()'s figures
        self.rounds = rounds  # head-to-head pairs per measurement (--rounds)
        self.paired: dict[str, list[tuple[ClientRun, ClientRun]]] = {}  # by tag, every round
        self.references: dict[str, list[ClientRun]] = {}  # by tag: durable_client.py's rounds

    def warm_up(self) -> None:
        """Run each client once on a few rows, unmeasured, so that the measured runs start as
        they would on a user's machine after the first: with their bytecode cached
        (``bench_clients.PYCACHE``)."""
        progress("    warming up the clients (bytecode cache)")
        with emulator(["--latency", "0"]) as emu:
            self.head_to_head(emu, "warm-up", 4, 4, "512", rounds=1, reference=True)

    def scaled(self, full: int) -> int:
        return max(full // QUICK_SCALE, 1) if self.quick else full

    def manifest(self, rows: int) -> Path:
        return write_manifest(self.work / "manifests" / f"rows-{rows}.csv", rows)

    def floor_ms(self, size: str) -> float:
        """The least CPU one image of ``size`` costs a client here (ms), measured once."""
        if size not in self.floors:
            progress(f"    measuring the CPU floor per {size} image (scripts/floor.py)")
            self.floors.update(floor.floors([size], rounds=_FLOOR_ROUNDS[self.mode]))
        return self.floors[size]["cpu_ms"]

    def head_to_head(
        self,
        emu: Emulator,
        tag: str,
        rows: int,
        concurrency: int,
        size: str,
        *,
        rounds: int | None = None,
        reference: bool = False,
    ) -> tuple[ClientRun, ClientRun]:
        """nanobatch and the baseline on the same manifest and settings, ``rounds`` times
        (``--rounds``), each round in another order: the run of each client with the median
        CPU per image. Every round is kept in ``paired[tag]``: on this shared machine one pair
        can be off by 15-30%, so the CPU gate takes the median of the paired ratios
        (``cpu_per_image``) and the memory gates each client's median RSS (``median_figure``).
        ``reference``: each round also runs ``scripts/durable_client.py`` (``references[tag]``),
        a bare client with nanobatch's durability, the yardstick for nanobatch's own work."""
        manifest = self.manifest(rows)
        common: dict[str, Any] = {"rows": rows, "concurrency": concurrency, "image_size": size}
        count = rounds or self.rounds
        pairs, references = [], []
        for r in range(count):
            out = self.work / tag / (f"round-{r + 1}" if count > 1 else "")
            runs: dict[str, ClientRun] = {}
            # nanobatch and the baseline alternate; the reference takes each place in turn.
            order = ["baseline", "nanobatch"] if r % 2 else ["nanobatch", "baseline"]
            if reference:
                order.insert(r % 3, "durable")
            for client in order:
                runner = getattr(self.clients, client)
                runs[client] = runner(emu, out / slug(client), manifest, **common)
            pairs.append((runs["nanobatch"], runs["baseline"]))
            references += [runs["durable"]] if reference else []
        self.paired[tag] = pairs
        if reference:
            self.references[tag] = references
        return _median([nb for nb, _ in pairs]), _median([base for _, base in pairs])

    def references_of(self, run: ClientRun) -> list[tuple[ClientRun, ClientRun, ClientRun]]:
        """(durable client, nanobatch, baseline) in each round of ``run``'s head-to-head, if it
        ran the durable client."""
        for tag, pairs in self.paired.items():
            if any(run is a or run is b for a, b in pairs) and tag in self.references:
                refs = self.references[tag]
                return [(ref, nb, base) for ref, (nb, base) in zip(refs, pairs, strict=True)]
        return []

    def median_figure(self, run: ClientRun, figure: str) -> float:
        """The median of ``figure`` (a ``ProcessFigures`` field, e.g. ``peak_rss_mb``) over
        every round of ``run``'s client in its head-to-head: a memory gate is held to the
        median memory, not to the round with the median CPU."""
        side = [a if any(run is x for x, _ in self.rounds_of(run)) else b
                for a, b in self.rounds_of(run)] or [run]  # fmt: skip
        return float(statistics.median(getattr(r.figures, figure) for r in side))

    def every_run(self, runs: list[ClientRun]) -> list[ClientRun]:
        """``runs`` with every other round of their head-to-heads (each once)."""
        found: list[ClientRun] = []
        for run in runs:
            rounds = [x for pair in self.rounds_of(run) for x in pair]
            rounds += [ref for ref, _, _ in self.references_of(run)]
            for candidate in rounds or [run]:
                if not any(candidate is f for f in found):
                    found.append(candidate)
        return found

    def rounds_of(self, run: ClientRun) -> list[tuple[ClientRun, ClientRun]]:
        """Every pair of the head-to-head ``run`` came from (one pair without --rounds)."""
        found = (p for p in self.paired.values() if any(run is a or run is b for a, b in p))
        return next(found, [])


def cpu_ms(run: ClientRun) -> float:
    """Whole-process client CPU per image written, ms."""
    return 1000 * run.figures.cpu_s / max(run.succeeded, 1)


def _median(runs: list[ClientRun]) -> ClientRun:
    return sorted(runs, key=cpu_ms)[(len(runs) - 1) // 2]


def problems(runs: list[ClientRun]) -> list[str]:
    """Client runs that did not do the whole job: listed under the table."""
    out = []
    for run in runs:
        if run.figures.stopped_early:
            continue  # a time box: stopping it was the point
        if run.figures.exit_code != 0:
            out.append(f"{run.client} exited with code {run.figures.exit_code} (log: {run.log})")
        if run.succeeded < run.rows:
            out.append(f"{run.client} produced {run.succeeded} of {run.rows} images")
    return out
