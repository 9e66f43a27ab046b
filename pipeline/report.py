"""``nanobatch report``: what a run did, for the morning after.

A terminal summary (counts by status and reason, spend, duration, throughput, the slowest rows,
the refusal reasons with the model's own words) and ``DIR/report.html``: a self-contained
contact sheet (one file, no external assets) with a thumbnail per row, filters by status and
reason, a search, pagination and links to the full images. Thumbnails are made once with
Pillow into ``DIR/thumbs/`` and reused, so a report over 10,000 rows stays quick to rebuild.
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from pipeline.errors import UsageError
from pipeline.ledger import ATTEMPTS_FILE, LEDGER_FILE
from pipeline.prices import PriceTable
from pipeline.report_html import render
from pipeline.storage import write_atomic
from pipeline.summary import status_lines

REPORT_FILE = "report.html"
THUMBS_DIR = "thumbs"
THUMB_PX = 256
_COLUMNS = [
    "row_id", "status", "reason", "prompt", "text", "error", "output_paths", "width", "height",
    "latency_ms", "cost_usd", "attempts", "model", "image_size",
]  # fmt: skip


@dataclass(slots=True)
class Report:
    """The figures of a run directory."""

    rows: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_reason: Counter[tuple[str, str]] = field(default_factory=Counter)
    spend_usd: float = 0.0
    requests: int = 0
    duration_s: float | None = None
    slowest: list[tuple[str, float]] = field(default_factory=list)
    refusal_texts: dict[str, str] = field(default_factory=dict)  # reason -> one example
    html: Path | None = None


def build_report(out_dir: Path, prices: PriceTable | None = None, *, workers: int = 4) -> Report:
    """Read the ledger and attempt history, make thumbnails, write report.html."""
    prices = prices or PriceTable()
    path = out_dir / LEDGER_FILE
    if not path.exists():
        raise UsageError(f"{out_dir} has no {LEDGER_FILE}: run nanobatch run --out {out_dir} first")
    table = pq.read_table(path)
    names = set(table.column_names)
    rows: list[dict[str, Any]] = table.select([c for c in _COLUMNS if c in names]).to_pylist()
    rows.sort(key=lambda r: (r["status"] != "succeeded", r["row_id"]))
    report = Report(rows=len(rows))
    for row in rows:
        report.by_status[row["status"]] += 1
        report.by_reason[(row["status"], row["reason"])] += 1
        report.spend_usd += _cost(row, prices)
        if row["status"] == "refused" and (row.get("text") or row.get("error")):
            report.refusal_texts.setdefault(row["reason"], row.get("text") or row["error"])
    timed = [r for r in rows if r.get("latency_ms") is not None]
    timed.sort(key=lambda r: -r["latency_ms"])
    report.slowest = [(r["row_id"], r["latency_ms"]) for r in timed[:5]]
    report.requests, report.duration_s = _attempt_figures(out_dir)
    with ThreadPoolExecutor(workers) as pool:
        thumbs = list(pool.map(lambda r: thumbnail(out_dir, r), rows))
    tiles = [_tile(row, thumb) for row, thumb in zip(rows, thumbs, strict=True)]
    summary = format_report(report, out_dir)
    html = render(tiles, title=f"nanobatch: {out_dir.resolve().name}", summary=summary)
    report.html = out_dir / REPORT_FILE
    write_atomic(report.html, html.encode())
    return report


def _cost(row: dict[str, Any], prices: PriceTable) -> float:
    """The row's recorded cost; for ledgers from before costs were recorded, the price table's."""
    if row.get("cost_usd") is not None:
        return float(row["cost_usd"])
    if row["status"] == "succeeded":
        return prices.per_image(row.get("model") or "", row.get("image_size") or "1K")
    return prices.refusal_usd if row["status"] == "refused" else 0.0


def _attempt_figures(out_dir: Path) -> tuple[int, float | None]:
    """HTTP requests over all runs, and the time from the first to the last answer."""
    path = out_dir / ATTEMPTS_FILE
    if not path.exists():
        return 0, None
    table = pq.read_table(path, columns=["started_at", "finished_at"])
    if not table.num_rows:
        return 0, None
    first: datetime = pc.min(table["started_at"]).as_py()
    last: datetime = pc.max(table["finished_at"]).as_py()
    return table.num_rows, (last - first).total_seconds()


def thumbnail(out_dir: Path, row: dict[str, Any]) -> str | None:
    """The row's thumbnail (made if missing or older than its image), relative to DIR."""
    outputs = row.get("output_paths") or []
    if row["status"] != "succeeded" or not outputs:
        return None
    source = out_dir / outputs[0]
    rel = f"{THUMBS_DIR}/{Path(outputs[0]).stem}.jpg"
    target = out_dir / rel
    try:
        if target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
            return rel
        with Image.open(source) as im:
            im.draft("RGB", (THUMB_PX, THUMB_PX))  # JPEG: decode at a fraction of the size
            small = im.convert("RGB")
            small.thumbnail((THUMB_PX, THUMB_PX))
        target.parent.mkdir(exist_ok=True)
        tmp = target.with_name(f".tmp-{os.getpid()}-{target.name}")
        small.save(tmp, "JPEG", quality=80)
        os.replace(tmp, target)
    except (OSError, ValueError):  # a missing or broken image: the tile says so
        return None
    return rel


def _tile(row: dict[str, Any], thumb: str | None) -> dict[str, Any]:
    """What the page needs for one row (short keys: 10,000 of them are embedded)."""
    outputs = row.get("output_paths") or []
    return {
        "id": row["row_id"],
        "s": row["status"],
        "r": row["reason"],
        "p": row.get("prompt") or "",
        "t": (row.get("text") or row.get("error") or "")[:600],
        "th": thumb,
        "im": outputs,
        "wh": f"{row['width']}x{row['height']}" if row.get("width") else "",
        "ms": row.get("latency_ms"),
    }


def format_report(report: Report, out_dir: Path) -> str:
    """The terminal summary."""
    lines = [f"{out_dir}: {report.rows} rows", *status_lines(report.by_status, report.by_reason)]
    lines.append(f"spend: ${report.spend_usd:,.2f} by the price table")
    if report.duration_s:
        rate = report.by_status.get("succeeded", 0) / report.duration_s * 60
        lines.append(
            f"duration: {report.duration_s:,.0f} s from the first request to the last answer, "
            f"{report.requests} requests, {rate:,.1f} images/min"
        )
    if report.slowest:
        slow = ", ".join(f"{row_id} ({ms / 1000:.1f} s)" for row_id, ms in report.slowest)
        lines.append(f"slowest: {slow}")
    if report.refusal_texts:
        lines.append("refusals, in the model's words:")
        for reason, text in sorted(report.refusal_texts.items()):
            lines.append(f"  {reason}: {' '.join(text.split())[:200]}")
    if report.html is not None:
        lines.append(f"contact sheet: {report.html}")
    return "\n".join(lines)
