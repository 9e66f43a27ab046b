"""Run a manifest as a command does: progress view, summary, messages and the exit code.

Exit codes (one table in the README, for cron users): 0 every row succeeded or was refused;
1 some row ended failed or invalid; 2 nothing was sent because of a usage or input error;
3 stopped by the API; 4 stopped by the spending cap or a deadline; 5 stopped because the
output disk is full (or read-only, or failing); 130 interrupted.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

import httpx

from pipeline.commands.figures import duration
from pipeline.commands.progress import ProgressReporter
from pipeline.commands.summary import format_summary
from pipeline.core.config import RunConfig, RunMode
from pipeline.core.errors import NanobatchError
from pipeline.core.heap import keep_freed_memory
from pipeline.core.options import continue_command
from pipeline.core.retry import seconds_until_quota_reset
from pipeline.core.types import Status
from pipeline.plan import rowids
from pipeline.plan.checkpass import check_pass, ledger_ids, open_settled, raise_problems
from pipeline.plan.done import done_rows, redone_since
from pipeline.plan.scan import check_options
from pipeline.providers.registry import provider_for
from pipeline.run.control import Halt
from pipeline.run.result import RunResult
from pipeline.run.scheduler import run_manifest
from pipeline.run.start import cost_to_send
from pipeline.store.batchbook import BatchBook
from pipeline.store.diskspace import default_headroom, free_bytes
from pipeline.store.ledger import Ledger

HALT_EXIT_CODES = {
    Halt.API: 3,
    Halt.COST_CAP: 4,
    Halt.DEADLINE: 4,
    Halt.INTERRUPTED: 130,
    Halt.DISK_FULL: 5,
}
_HALT_WORDS = {
    Halt.COST_CAP: "the spending cap was reached",
    Halt.DEADLINE: "the deadline was reached",
    Halt.INTERRUPTED: "interrupted",
    Halt.API: "the API stopped the run",
    Halt.DISK_FULL: "the output disk is full",
}


_RETRY_IN = re.compile(r"Please retry in [0-9.]+\s*m?s\.?", re.IGNORECASE)


def run_and_report(
    config: RunConfig,
    transport: httpx.AsyncBaseTransport | None,
    *,
    argv: list[str],
    out: Callable[[str], None],
    err: Callable[[str], None],
    progress_every_s: float = 30.0,
) -> int:
    """Run with a progress view, print the summary, and return the exit code."""
    keep_freed_memory()
    batch = config.mode is RunMode.BATCH
    reporter = ProgressReporter(
        config.out_dir, emit=err, line_every_s=progress_every_s, clock=config.clock, batch=batch
    )
    started = config.clock.now()
    try:
        result = config.clock.run(run_manifest, config, transport, [reporter.run])
    except NanobatchError as e:
        err(f"nanobatch: {e}")
        return e.exit_code
    except KeyboardInterrupt:  # only before the run's own signal handling is in place
        err("nanobatch: interrupted; finished rows are saved, rerun to continue")
        return 130
    if batch:
        note_submitted(result, config)
    reporter.write_status(result)
    out(format_summary(result, config.out_dir))
    pin = redone_since(config, started)
    if result.halt is Halt.API and result.stopped is not None:
        again = f" To continue: {continue_command(argv, rerun_before=pin)}" if pin else ""
        source = provider_for(config).auth.source
        err(f"nanobatch: {stop_message(result, source, config.base_url)}{again}")
        return HALT_EXIT_CODES[Halt.API]
    if result.halt is Halt.DISK_FULL:
        left = pending_rows(replace(config, rerun_before=pin), result.manifest_rows)
        err(f"nanobatch: {disk_message(result, config, left)} "
            f"To continue: {continue_command(argv, rerun_before=pin)}")  # fmt: skip
        return HALT_EXIT_CODES[Halt.DISK_FULL]
    if result.halt is not None:
        left = pending_rows(replace(config, rerun_before=pin), result.manifest_rows)
        cap = None
        if result.halt is Halt.COST_CAP and config.max_cost_usd is not None:
            # The cap counts the whole job: repeating it would stop again at once.
            assert result.remaining_usd is not None  # counted by the run the cap stopped
            cap = result.job_spent_usd + result.remaining_usd
        again = continue_command(argv, max_cost=cap, rerun_before=pin)
        err(f"nanobatch: stopped: {_HALT_WORDS[result.halt]}; {left} rows left"
            f"{jobs_note(result, config) if batch else ''}. To continue: {again}")  # fmt: skip
        # A stopped batch run is a deadline's stop, whatever stopped it: its jobs keep running.
        return 4 if batch and result.halt is Halt.INTERRUPTED else HALT_EXIT_CODES[result.halt]
    if (
        config.limit is not None
        and result.manifest_rows_all is not None
        and (left := pending_rows(replace(config, rerun_before=pin), result.manifest_rows_all))
    ):
        again = continue_command(argv, rerun_before=pin, without=("--limit",)) if pin else ""
        err(f"nanobatch: --limit {config.limit}: {left} rows of the manifest remain; "
            "run again without --limit to do them"
            + (f". To continue: {again}" if again else ""))  # fmt: skip
    unfinished = (Status.FAILED.value, Status.INVALID.value)
    return 1 if any(result.by_status.get(s) for s in unfinished) else 0


def note_submitted(result: RunResult, config: RunConfig) -> None:
    """The batch jobs still at Google once the run ended (their rows stay pending here)."""
    held = [j for j in BatchBook.load(config.out_dir) if j.holds_rows and j.exists_remotely]
    result.submitted_jobs = [job.batch_name or job.display_name for job in held]
    result.submitted_rows = sum(len(job.rows) for job in held)


def jobs_note(result: RunResult, config: RunConfig) -> str:
    """What a stop left at Google: the jobs keep running, and how to cancel them."""
    if not result.submitted_jobs:
        return ""
    return (f"; {len(result.submitted_jobs)} batch jobs keep running at Google with "
            f"{result.submitted_rows} rows (status.json shows them submitted; a rerun folds "
            f"them, `nanobatch batch cancel {config.out_dir}` cancels them)")  # fmt: skip


def stop_message(result: RunResult, source: str, base_url: str) -> str:
    """One sentence on why the API stopped the run, naming the credential's ``source`` (its
    ``Auth`` says where it comes from), never the credential."""
    stopped = result.stopped
    assert stopped is not None
    message = " ".join((stopped.message or "").split())
    if stopped.reason == "QUOTA_EXHAUSTED":
        # Google's text says "Please retry in 5s", true of its per-minute window only.
        message = _RETRY_IN.sub("", message).strip()
    detail = f": {message.rstrip('.')}" if message else ""
    what = {
        "API_KEY_INVALID": f"the API rejected {source}",
        "UNAUTHENTICATED": f"the API did not accept {source}",
        "PERMISSION_DENIED": f"{source} has no permission for this model at {base_url}",
        "MODEL_NOT_FOUND": "a model does not exist at this endpoint",
        "NO_QUOTA": "the project has no quota for a model on this route",
        "QUOTA_EXHAUSTED": "the daily quota is used up; it resets at midnight Pacific time "
        f"(in {duration(seconds_until_quota_reset())}): rerun then, or use --on-quota wait",
        "FAILED_PRECONDITION": "the project cannot use this API (billing or region)",
        "REDIRECTED": "the API answered with a redirect, which is not followed",
        "CREDENTIALS_FAILED": f"no credentials could be had from {source}",
        "TIER_NOT_SUPPORTED": "the route does not offer the service tier asked for (send "
        "those rows with --tier-fallback standard, or choose another --tier)",
    }.get(stopped.reason, f"the API stopped the run ({stopped.reason})")
    return f"run stopped: {what}{detail}. Unfinished rows stay pending; rerun to continue."


def disk_message(result: RunResult, config: RunConfig, left: int) -> str:
    """One sentence: what the disk said, what was lost, and how much space a rerun needs."""
    out = config.out_dir
    lost = (
        f"; {result.unstored} received images could not be stored "
        f"({result.unstored_bytes / 1e6:.1f} MB): recorded as failed and billed"
        if result.unstored
        else ""
    )
    if not (result.disk_error or "").startswith(("ENOSPC", "EDQUOT")):
        return (f"stopped: {out} cannot be written ({result.disk_error}){lost}; {left} rows "
                "left. Make it writable, check the disk, then rerun.")  # fmt: skip
    reserve = config.disk_headroom_bytes
    reserve = default_headroom(config.concurrency) if reserve is None else reserve
    done = result.by_status.get(Status.SUCCEEDED.value, 0)
    per_row = result.stored_bytes / done if done and result.stored_bytes else 4e6
    needed = reserve + per_row * left
    free = free_bytes(out)
    return (f"stopped: the disk is full at {out} ({result.disk_error}){lost}; {left} rows left "
            f"need about {needed / 1e6:.0f} MB ({per_row / 1e6:.1f} MB per image plus "
            f"{reserve / 1e6:.0f} MB kept in reserve) and {free / 1e6:.1f} MB is free: free at "
            f"least {max(needed - free, 0) / 1e6:.0f} MB more, then rerun.")  # fmt: skip


def remaining_usd(config: RunConfig) -> float:
    """What the rows a rerun would send should cost, one image each by the price table (a
    run stopped by the cap counts it itself: ``RunResult.remaining_usd``)."""
    ledger = Ledger(config.out_dir)
    recorded, rows = rowids.load(config.out_dir, ledger_ids(ledger))
    config, opened = open_settled(config, recorded, rows)  # ids read as the folder reads them
    check_options(config)
    done = done_rows(ledger, config.rerun, config.rerun_before)
    with check_pass(config, opened, None) as checked:
        raise_problems(checked)
        return cost_to_send(checked, done)


def pending_rows(config: RunConfig, manifest_rows: int) -> int:
    """Of the manifest's rows (as the run counted them), those not yet succeeded or refused,
    or selected by --rerun and not yet redone."""
    done = done_rows(Ledger(config.out_dir), config.rerun | {Status.FAILED}, config.rerun_before)
    return max(0, manifest_rows - len(done))
