"""What a run starts from, read before anything is sent: the folder's id scheme and the one
pass over the manifest (``check``: with --strict, every row checked), what a killed run had
in flight, what earlier runs spent, the done rows, the scan, whether the done rows can be
trusted without re-checking them (a trusted resume), and what is on disk to adopt (images a
crashed or earlier run made but did not record), then the adoption itself as the planned
batches are handed out; after the run, what is left (``left_after``) from the same pass."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio
import structlog

from pipeline.core.budget import worst_case
from pipeline.core.config import RunConfig, RunMode
from pipeline.core.models import effective_size
from pipeline.core.types import InvalidRow, Job, Status
from pipeline.plan import planstate, rowids
from pipeline.plan.checkpass import (
    CheckedManifest,
    check_pass,
    ledger_ids,
    open_settled,
    raise_problems,
)
from pipeline.plan.done import DoneRows, done_rows, redone_since
from pipeline.plan.planner import PlannedBatch, Planner
from pipeline.plan.planstate import name_change_note
from pipeline.plan.scan import Scan, check_options, scan
from pipeline.plan.sources import SourceCache
from pipeline.plan.strict import strict_check
from pipeline.run.control import Halt
from pipeline.run.recovery import (
    adoptable,
    claim,
    find_orphans,
    own_files,
    recorded_digests,
    set_aside,
)
from pipeline.run.result import RunResult
from pipeline.store import provenance
from pipeline.store.batchbook import held_rows
from pipeline.store.inflight import InFlight
from pipeline.store.ledger import Ledger, LedgerRecord
from pipeline.store.spend import spent_in

log = structlog.get_logger("nanobatch")


def check(config: RunConfig, ledger: Ledger) -> CheckedManifest:
    """The one pass over the manifest, before anything is sent: the id scheme settled (the
    folder's record, else --id-column or the header, recorded now, before any row is; a
    different one stops the run), every row within --limit parsed and checked as a whole, and
    with --strict each row as validate checks it. The caller closes it (its spooled rows)."""
    out = config.out_dir
    recorded, rows = rowids.load(out, ledger_ids(ledger))
    config, opened = open_settled(config, recorded, rows)
    if recorded is None or not (out / rowids.ID_FILE).exists():
        rowids.save(out, opened.header.ids)
    for note in opened.header.notes:
        log.warning("manifest.note", note=note)
    check_options(config)
    checked = check_pass(config, opened, out)
    try:
        if config.strict:
            strict_check(checked)
        raise_problems(checked)
    except BaseException:
        checked.close()
        raise
    return checked


async def recover_in_flight(inflight: InFlight, ledger: Ledger) -> None:
    """What a killed run had in flight may have been billed: into the attempt history it goes
    (so the job's spend counts it); then this run's own notes are opened."""
    lost = await anyio.to_thread.run_sync(inflight.recover)
    if lost:
        await anyio.to_thread.run_sync(ledger.append, [], lost)
    await anyio.to_thread.run_sync(inflight.open)


async def earlier_spend(config: RunConfig) -> float:
    """What earlier runs in the output directory spent (the cap is the job's, not the run's)."""
    return await anyio.to_thread.run_sync(spent_in, config.out_dir)


@dataclass
class RunStart:
    """The plan of one run and what it may adopt instead of sending."""

    config: RunConfig
    sources: SourceCache
    checked: CheckedManifest
    done: DoneRows
    scan: Scan
    inputs: dict[str, Any]
    trusted: bool  # every done row was checked against these inputs by an earlier run
    planner: Planner
    orphans: dict[str, list[str]] = field(default_factory=dict)  # images left unrecorded
    recorded: dict[str, list[str]] = field(default_factory=dict)  # --rerun succeeded: rows' now
    has_provenance: bool = False  # the directory holds provenance records: look rows up
    records_since: float | None = None  # provenance.records_since (None: any age)
    # --mode batch: rows live batch jobs hold. A fold a kill cut short left their images on
    # disk; the job's results record them again (at the batch price, once), not adoption.
    held: frozenset[str] = frozenset()

    def next_batch(
        self, batches: Iterator[PlannedBatch]
    ) -> tuple[PlannedBatch, list[Job | InvalidRow | LedgerRecord]] | None:
        """The next planned batch, its rows whose images are already on disk adopted."""
        batch = next(batches, None)
        if batch is None:
            return None
        return batch, [self._adopt(i) if isinstance(i, Job) else i for i in batch.items]

    def _adopt(self, job: Job) -> Job | LedgerRecord:
        if not self.has_provenance and not self.orphans:
            return job
        out = self.config.out_dir
        by_name = own_files(out, claim(self.orphans, job), job.output_stem) if self.orphans else []
        if job.row_id in self.held:
            return job
        since = self.records_since
        adopted = adoptable(job, by_name, out, self.sources, self.recorded.get, records_since=since)
        if adopted is None and by_name:
            # Paid for, not this row's: aside now, before its new image takes the name.
            set_aside(out, {job.output_stem: by_name})
        return adopted or job


async def start(
    config: RunConfig, ledger: Ledger, sources: SourceCache, checked: CheckedManifest
) -> RunStart:
    """Read everything the run's plan depends on (in threads: it is file work)."""
    done = await anyio.to_thread.run_sync(done_rows, ledger, config.rerun, config.rerun_before)
    note = await anyio.to_thread.run_sync(name_change_note, config, len(done))
    if note:
        log.warning("run.name_template_changed", note=note)
    to_do = await anyio.to_thread.run_sync(scan, config, done, checked.ids)
    inputs = await anyio.to_thread.run_sync(planstate.inputs, config)
    out = config.out_dir
    trusted = await anyio.to_thread.run_sync(planstate.trusted, out, inputs, sources)
    if not trusted:
        planstate.forget(out)  # rows recorded from now on may follow other inputs
    planner = Planner(config, done, sources, to_do, checked.batches, verify_done=not trusted)
    if not trusted and len(done):
        # Read now, not when the first done row is planned: a ledger that cannot be read
        # must stop the run before anything is sent.
        await anyio.to_thread.run_sync(lambda: done.fingerprints)
    begun = RunStart(config, sources, checked, done, to_do, inputs, trusted, planner)
    if ledger.crashed:
        begun.orphans = await anyio.to_thread.run_sync(find_orphans, ledger)
    # Before this run writes an image; a folder without the mark gets it now.
    begun.records_since = await anyio.to_thread.run_sync(provenance.records_since, out)
    if Status.SUCCEEDED in config.rerun:
        begun.recorded = await anyio.to_thread.run_sync(recorded_digests, ledger)
    # A first run has no images to adopt: no lookup per row (one failed stat each).
    begun.has_provenance = await anyio.to_thread.run_sync(provenance.any_records, out)
    if config.mode is RunMode.BATCH:
        begun.held = await anyio.to_thread.run_sync(held_rows, out)
    return begun


def left_after(checked: CheckedManifest, result: RunResult, started_at: datetime) -> None:
    """What the command's last words need, from what the run knows (no second parse): the
    manifest's rows (the whole file's after --limit, counting on from where the pass stopped)
    and, stopped by the spending cap, what the rows a rerun would send should cost (planned
    again from the spooled rows, against the ledger as the run left it: call after its fold)."""
    config = checked.config
    result.manifest_rows = checked.rows
    if config.limit is not None and result.halt is None:
        result.manifest_rows_all = checked.count_all()
    if result.halt is Halt.COST_CAP:
        since = redone_since(config, started_at)
        done = done_rows(Ledger(config.out_dir), config.rerun, since)
        result.remaining_usd = cost_to_send(checked, done)


def cost_to_send(checked: CheckedManifest, done: DoneRows) -> float:
    """What the rows not in ``done`` should cost, one image each by the price table."""
    config = checked.config
    to_do = scan(config, done, checked.ids)
    planner = Planner(
        config, done, SourceCache(max_bytes=0), to_do, checked.batches, verify_done=False
    )
    return sum(
        worst_case(
            job,
            effective_size(job),
            config.prices,
            route=config.provider,
            fallback=config.retry.fallback,
        )
        for batch in planner
        for job in batch.items
        if isinstance(job, Job)
    )
