"""``nanobatch report``: what a run did, for the morning after.

A terminal summary (counts by status and reason, spend, duration, throughput, the slowest rows,
the refusal reasons with the model's own words) and ``DIR/report.html``: a self-contained
contact sheet (one file, no external assets) with a thumbnail per row, filters by status and
reason, a search, pagination and links to the full images. Thumbnails are made once with
Pillow into ``DIR/thumbs/`` and reused (``thumbs.py``), so a report over 10,000 rows stays quick
to rebuild; the page itself is ``report_html.py``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.commands.figures import duration
from pipeline.commands.report_html import render
from pipeline.commands.summary import status_lines
from pipeline.commands.thumbs import make_thumbnails
from pipeline.core.prices import PriceTable
from pipeline.store import attempts
from pipeline.store.ledgerview import LedgerView, read_ledger_view
from pipeline.store.spend import spent_in
from pipeline.store.storage import write_atomic

REPORT_FILE = "report.html"
SLOWEST = 5
# Attempts further apart than this belong to different runs (a rerun the next morning): the
# idle time between runs is not part of the duration. Rate-limit waits are far shorter.
RUN_GAP_S = 600.0
_COLUMNS = (
    "row_id", "status", "reason", "line", "prompt", "text", "error", "output_paths", "width",
    "height", "latency_ms", "finished_at", "cost_usd", "model", "image_size", "metadata",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SlowRow:
    """One of the rows whose last attempt took longest."""

    row_id: str
    latency_ms: float
    status: str
    model: str | None
    image_size: str | None


@dataclass(frozen=True, slots=True)
class Report:
    """The figures of a run directory, over every run that wrote to it."""

    out_dir: Path
    html: Path  # the contact sheet written
    rows: int
    by_status: Counter[str]
    by_reason: Counter[tuple[str, str]]  # (status, reason) -> rows
    images: int  # image files the ledger lists
    spend_usd: float
    estimated_rows: int  # rows without a recorded cost_usd, priced by the price table instead
    requests: int  # HTTP attempts, from attempts.parquet
    duration_s: float | None  # time the runs were going (gaps between runs left out)
    runs: int  # how many runs that time is made of
    slowest: tuple[SlowRow, ...]
    refusal_texts: dict[str, str]  # refusal reason -> the model's words, one example
    thumbnails: int  # tiles with a picture
    pending_journal: bool  # a run is going or was killed: its latest rows come from its journal


def build_report(out_dir: Path, prices: PriceTable | None = None) -> Report:
    """Read the ledger and attempt history, make thumbnails, write ``report.html`` atomically."""
    rows, view = _read_ledger(out_dir)
    prices = prices or PriceTable()
    by_status: Counter[str] = Counter(r["status"] for r in rows)
    by_reason: Counter[tuple[str, str]] = Counter((r["status"], r["reason"]) for r in rows)
    refusal_texts: dict[str, str] = {}
    for row in rows:
        words = row.get("text") or row.get("error")
        if row["status"] == "refused" and words:
            refusal_texts.setdefault(row["reason"], words)
    timed = sorted(
        (r for r in rows if r.get("latency_ms") is not None), key=lambda r: -r["latency_ms"]
    )
    requests, sessions = _sessions(out_dir)
    if not sessions:  # no attempt history (an older run): the ledger's own timestamps
        stamps = [r["finished_at"] for r in rows if r.get("finished_at") is not None]
        sessions = [(min(stamps), max(stamps))] if len(stamps) > 1 else []
    duration = sum((end - start).total_seconds() for start, end in sessions)
    firsts = [
        (r.get("output_paths") or [None])[0] if r["status"] == "succeeded" else None for r in rows
    ]
    thumbs = make_thumbnails(out_dir, firsts)
    report = Report(
        out_dir=out_dir,
        html=out_dir / REPORT_FILE,
        rows=len(rows),
        by_status=by_status,
        by_reason=by_reason,
        images=sum(len(r.get("output_paths") or []) for r in rows),
        # The ledger keeps each row's last run only; the attempt history keeps every run's.
        spend_usd=max(sum(_cost(row, prices) for row in rows), spent_in(out_dir)),
        # An invalid row was never sent: it has no cost to record, nor to estimate.
        estimated_rows=sum(r.get("cost_usd") is None and r["status"] != "invalid" for r in rows),
        requests=requests,
        duration_s=duration or None,
        runs=len(sessions),
        slowest=tuple(
            SlowRow(r["row_id"], r["latency_ms"], r["status"], r.get("model"), r.get("image_size"))
            for r in timed[:SLOWEST]
        ),
        refusal_texts=refusal_texts,
        thumbnails=sum(t is not None for t in thumbs),
        pending_journal=view.live,
    )
    tiles = [_tile(row, thumb) for row, thumb in zip(rows, thumbs, strict=True)]
    page = render(
        tiles,
        title=f"nanobatch: {out_dir.resolve().name}",
        headline=_headline(report),
        summary=format_report(report),
    )
    write_atomic(report.html, page.encode())
    return report


def _read_ledger(out_dir: Path) -> tuple[list[dict[str, Any]], LedgerView]:
    """The ledger's rows (journal included) in manifest order, as dicts of the report's columns."""
    view = read_ledger_view(out_dir, _COLUMNS)
    rows: list[dict[str, Any]] = view.table.to_pylist()
    rows.sort(key=lambda r: (r.get("line") is None, r.get("line") or 0, r["row_id"]))
    return rows, view


def _cost(row: dict[str, Any], prices: PriceTable) -> float:
    """The row's recorded cost; for ledgers from before costs were recorded, the price table's
    (an image's price per image for a success, the refusal price for a refusal, else nothing)."""
    if row.get("cost_usd") is not None:
        return float(row["cost_usd"])
    if row["status"] == "succeeded":
        images = max(1, len(row.get("output_paths") or []))
        return images * prices.per_image(row.get("model") or "", row.get("image_size") or "1K")
    return prices.refusal_usd if row["status"] == "refused" else 0.0


def _sessions(out_dir: Path) -> tuple[int, list[tuple[datetime, datetime]]]:
    """HTTP attempts over all runs, and the spans when runs were going (merged attempts)."""
    wanted = ["started_at", "finished_at"]
    pairs: list[tuple[datetime | None, datetime | None]] = []
    try:
        for batch in attempts.folded_batches(out_dir, wanted):
            if batch.schema.names != wanted:
                return 0, []  # no start and end times to go by
            pairs += zip(*(c.to_pylist() for c in batch.columns), strict=True)
    except (pa.ArrowInvalid, OSError):
        return 0, []  # the history is diagnostics: the report stands without it
    # A run going, or killed before its fold, has its latest attempts in the journal.
    pairs += [
        (r.get("started_at"), r.get("finished_at")) for r in attempts.journal_records(out_dir)
    ]
    spans = sorted((s, f) for s, f in pairs if s is not None and f is not None)
    sessions: list[tuple[datetime, datetime]] = []
    for start, end in spans:
        if sessions and (start - sessions[-1][1]).total_seconds() <= RUN_GAP_S:
            sessions[-1] = (sessions[-1][0], max(sessions[-1][1], end))
        else:
            sessions.append((start, end))
    return len(pairs), sessions


def _tile(row: dict[str, Any], thumb: str | None) -> dict[str, Any]:
    """What the page needs for one row (short keys: 10,000 of them are embedded)."""
    outputs = row.get("output_paths") or []
    words = row.get("text") or row.get("error") or ""
    if row["status"] == "refused" and not words:
        words = "(the model gave no text)"
    if row["status"] == "succeeded" and thumb is None:
        words = f"no preview: {outputs[0] if outputs else 'no image'} is missing or unreadable"
    return {
        "id": row["row_id"],
        "s": row["status"],
        "r": row["reason"],
        "p": row.get("prompt") or "",
        "t": words[:600],
        "th": thumb,
        "im": outputs,
        "wh": f"{row['width']}x{row['height']}" if row.get("width") else "",
        "ms": row.get("latency_ms"),
        "md": _metadata(row.get("metadata")),
    }


def _metadata(text: str | None) -> list[list[str]]:
    """The row's own columns (sku, title...) as [name, value] pairs, for its tile."""
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return []
    if not isinstance(data, dict):
        return []
    return [[str(k), str(v)[:200]] for k, v in list(data.items())[:12]]


def _headline(report: Report) -> str:
    """The figures next to the page's title."""
    parts = [_rows(report.rows), f"{report.images} images"]
    parts.append(f"{'~' if report.estimated_rows else ''}${report.spend_usd:,.2f}")
    if report.duration_s:
        parts.append(duration(report.duration_s))
    return " · ".join(parts)


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def format_report(report: Report, out_dir: Path | None = None) -> str:
    """The terminal summary (``out_dir`` names the directory; the report's own by default)."""
    where = out_dir if out_dir is not None else report.out_dir
    lines = [f"{where}: {report.rows} rows, {report.images} images"]
    lines += status_lines(report.by_status, report.by_reason)
    if report.estimated_rows == 0:
        lines.append(f"spend: ${report.spend_usd:,.2f} (recorded by the runs)")
    else:
        lines.append(
            f"spend: ~${report.spend_usd:,.2f} ({_rows(report.estimated_rows)} without a recorded "
            "cost, estimated from the price table: standard prices, refusals free)"
        )
    if report.duration_s:
        rate = report.images / report.duration_s * 60
        runs = f" over {report.runs} runs" if report.runs > 1 else ""
        requests = f", {report.requests} requests" if report.requests else ""
        lines.append(
            f"duration: {duration(report.duration_s)}{runs}{requests}, {rate:,.1f} images/min"
        )
    if report.slowest:
        lines.append("slowest:")
        for slow in report.slowest:
            what = " ".join(x for x in (slow.model, slow.image_size) if x)
            lines.append(
                f"  {slow.latency_ms / 1000:7.1f} s  {slow.row_id}  {slow.status}  {what}".rstrip()
            )
    if report.refusal_texts:
        lines.append("refusals, in the model's words:")
        for reason, text in sorted(report.refusal_texts.items()):
            lines.append(f"  {reason}: {' '.join(text.split())[:200]}")
    if report.pending_journal:
        lines.append(
            "note: a run is going or was killed; the rows it recorded since its start are "
            "read from its journal (ledger.journal)"
        )
    lines.append(f"contact sheet: {report.html}")
    return "\n".join(lines)
