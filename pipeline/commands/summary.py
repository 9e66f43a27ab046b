"""The end-of-run summary: counts by status and reason, duration, throughput."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from pipeline.core.types import Status
from pipeline.run.result import RunResult
from pipeline.store.ledger import LEDGER_FILE
from pipeline.store.ledgerview import has_ledger, read_ledger_view

_ORDER = [s.value for s in Status]


def ledger_totals(out_dir: Path) -> Counter[str]:
    """Rows per status over the whole ledger (this run and earlier ones)."""
    if not has_ledger(out_dir):
        return Counter()
    return read_ledger_view(out_dir, ["status"]).by_status()


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{n} {key}" for key, n in counter.most_common())


def status_lines(
    by_status: Counter[str],
    by_reason: Counter[tuple[str, str]],
    *,
    reasons_of_success: bool = True,
    most: int = 8,
) -> list[str]:
    """One line per status: its count and its commonest reasons."""
    lines = []
    for status in _ORDER:
        count = by_status.get(status, 0)
        if not count:
            continue
        reasons = sorted(
            ((reason, n) for (s, reason), n in by_reason.items() if s == status),
            key=lambda item: (-item[1], item[0]),
        )
        detail = ""
        if reasons_of_success or status != Status.SUCCEEDED.value:
            detail = "  (" + ", ".join(f"{reason} {n}" for reason, n in reasons[:most]) + ")"
        lines.append(f"  {status:<10} {count:>7}{detail}")
    return lines


def format_summary(result: RunResult, out_dir: Path) -> str:
    """A few lines a person reads at a glance."""
    recorded = sum(result.by_status.values())
    rate = recorded / result.duration_s if result.duration_s > 0 else 0.0
    if recorded or result.requests:
        head = (
            f"this run: {recorded} rows recorded in {result.duration_s:.1f} s "
            f"({rate:.1f} rows/s), {result.requests} requests"
        )
    else:
        head = "this run: nothing to do"
    lines = [f"{head}; {result.skipped} rows were already done"]
    if result.changed:
        lines.append(f"  {result.changed} done rows were sent again: their inputs changed")
    if result.retried:
        lines.append(f"  retried: {_counts(result.retried)}")
    lines += status_lines(result.by_status, result.by_reason, reasons_of_success=False)
    if result.cancelled:
        shown = ", ".join(result.cancelled[:10])
        more = f" and {len(result.cancelled) - 10} more" if len(result.cancelled) > 10 else ""
        lines.append(
            f"  cancelled in flight, possibly billed: {len(result.cancelled)} requests "
            f"(rows {shown}{more}; attempts.parquet marks them possibly_billed)"
        )
    lines += tier_lines(result)
    lines += batch_lines(result, out_dir)
    totals = ledger_totals(out_dir)
    ordered = ", ".join(f"{totals[s]} {s}" for s in _ORDER if totals.get(s))
    lines.append(
        f"ledger: {ordered or 'empty'} ({out_dir / LEDGER_FILE}; images in {out_dir / 'images'})"
    )
    lines.append(spend_line(result))
    return "\n".join(lines)


def tier_lines(result: RunResult) -> list[str]:
    """Rows sent at the fallback tier, and tiers the route refused (--tier-fallback)."""
    lines = [f"  tier stopped: {what}: {why}" for what, why in result.tiers_stopped.items()]
    if result.fell_back:
        lines.append(
            f"  {result.fell_back} rows resent at standard (--tier-fallback standard), "
            "at the standard price"
        )
    return lines


def batch_lines(result: RunResult, out_dir: Path) -> list[str]:
    """--mode batch: rows answered by batch jobs and rows sent online by the fallback, each
    with its cost; jobs still running at Google."""
    lines = []
    if result.batch_rows or result.fallback_rows:
        lines.append(
            f"  batch: {result.batch_rows} rows from batch jobs (${result.batch_usd:.2f}, the "
            f"batch price); {result.fallback_rows} sent online by the fallback "
            f"(${result.fallback_usd:.2f})"
        )
    if result.submitted_jobs:
        lines.append(
            f"  submitted: {len(result.submitted_jobs)} batch jobs still running at Google hold "
            f"{result.submitted_rows} rows (pending here; see nanobatch batch status {out_dir})"
        )
    return lines


def spend_line(result: RunResult) -> str:
    """Spend this run and over the whole job, against the cap (which counts the whole job)."""
    cap = result.max_cost_usd
    against = f" (--max-cost ${cap:.2f})" if cap is not None else ""
    return (
        f"spend: ${result.spent_usd:.2f} this run, ${result.job_spent_usd:.2f} over all runs "
        f"in this directory{against}"
    )
