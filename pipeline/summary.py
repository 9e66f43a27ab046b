"""The end-of-run summary: counts by status and reason, duration, throughput."""

from __future__ import annotations

from pathlib import Path

from pipeline.scheduler import RunResult
from pipeline.types import Status

_ORDER = [s.value for s in Status]


def format_summary(result: RunResult, out_dir: Path) -> str:
    """A few lines a person reads at a glance."""
    recorded = sum(result.by_status.values())
    rate = recorded / result.duration_s if result.duration_s > 0 else 0.0
    lines = [
        f"{recorded} rows recorded in {result.duration_s:.1f} s ({rate:.1f} rows/s), "
        f"{result.requests} requests sent, {result.skipped} rows already done"
    ]
    for status in _ORDER:
        count = result.by_status.get(status, 0)
        if not count:
            continue
        reasons = sorted(
            ((reason, n) for (s, reason), n in result.by_reason.items() if s == status),
            key=lambda item: (-item[1], item[0]),
        )
        detail = ""
        if status != Status.SUCCEEDED.value:
            detail = "  (" + ", ".join(f"{reason} {n}" for reason, n in reasons[:6]) + ")"
        lines.append(f"  {status:<10} {count:>7}{detail}")
    lines.append(f"ledger: {out_dir / 'ledger.parquet'}   images: {out_dir / 'images'}")
    return "\n".join(lines)
