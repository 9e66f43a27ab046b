"""``nanobatch validate``: check every row of a manifest without the network, and say what the
job will cost and upload before a cent is spent. The rows are checked by ``plan.strict``, as
``run --strict`` checks them, from one parse of the manifest."""

from __future__ import annotations

import functools
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.config import RunConfig, RunMode
from pipeline.core.errors import UsageError
from pipeline.core.idscheme import IdScheme
from pipeline.core.models import effective_size
from pipeline.core.prices import PriceTable
from pipeline.core.types import InvalidRow, Job, Tier
from pipeline.plan.checkpass import check_pass, open_settled
from pipeline.plan.manifest import SHEET_ROWS, sheet_row
from pipeline.plan.rowimages import is_link
from pipeline.plan.rows import RowWarning
from pipeline.plan.scan import check_options
from pipeline.plan.sources import SourceCache, inline_bytes
from pipeline.plan.strict import every_row, row_label
from pipeline.providers.registry import provider_for
from pipeline.run.modes import check_mode

MAX_LISTED = 1000  # invalid rows and warnings kept for display; counts are always complete
_EXAMPLE_DATA_CHARS = 60


@dataclass(slots=True)
class Validation:
    """What a validation pass found."""

    rows: int = 0
    valid: int = 0
    invalid_count: int = 0
    invalid: list[InvalidRow] = field(default_factory=list)
    warning_count: int = 0
    warnings: list[RowWarning] = field(default_factory=list)
    images_by_model_size: Counter[tuple[str, str]] = field(default_factory=Counter)
    upload_bytes: int = 0
    source_files: int = 0  # distinct local source images
    example_body: dict[str, Any] | None = None
    standard_usd: float = 0.0
    flex_usd: float = 0.0
    batch_usd: float = 0.0
    chosen_usd: float = 0.0  # at each row's own tier (--tier, or its tier column)
    tiers: Counter[str] = field(default_factory=Counter)  # valid rows by the tier asked
    route: str | None = None  # --provider: whose prices
    mode: RunMode = RunMode.ONLINE  # --mode: batch makes the batch price the headline
    notes: list[str] = field(default_factory=list)  # about the file: columns, ids, format
    problems: list[str] = field(default_factory=list)  # whole-file: a run would not start
    ids: IdScheme | None = None

    @property
    def headline_usd(self) -> float:
        """The estimate for the mode asked: every row at the batch price, or at its tier."""
        return self.batch_usd if self.mode is RunMode.BATCH else self.chosen_usd

    def to_json(self, prices: PriceTable) -> dict[str, Any]:
        """The report for machines (``--format json``)."""
        price = functools.partial(prices.per_image, route=self.route)
        return {
            "mode": self.mode.value,
            "notes": self.notes,
            "problems": self.problems,
            "rows": self.rows,
            "valid": self.valid,
            "invalid": self.invalid_count,
            "invalid_rows": [
                {
                    "row_id": r.row_id,
                    "line": r.line,
                    "row": sheet_row(r.line),
                    "field": r.field,
                    "reason": r.reason,
                }
                for r in self.invalid
            ],
            "warnings": self.warning_count,
            "warning_rows": [
                {
                    "row_id": w.row_id,
                    "line": w.line,
                    "row": sheet_row(w.line),
                    "field": w.field,
                    "message": w.message,
                }
                for w in self.warnings
            ],
            "cost": [
                {
                    "model": model,
                    "image_size": size,
                    "images": n,
                    "standard_usd": round(n * price(model, size), 4),
                    "flex_usd": round(n * price(model, size, tier=Tier.FLEX), 4),
                    "batch_usd": round(n * price(model, size, batch=True), 4),
                }
                for (model, size), n in sorted(self.images_by_model_size.items())
            ],
            "standard_usd": round(self.standard_usd, 4),
            "flex_usd": round(self.flex_usd, 4),
            "batch_usd": round(self.batch_usd, 4),
            "chosen_usd": round(self.chosen_usd, 4),
            # what a run in this mode should cost: the batch price, or each row's own tier
            "estimated_usd": round(self.headline_usd, 4),
            "tiers": dict(self.tiers),
            "upload_bytes": self.upload_bytes,
            "distinct_source_files": self.source_files,
            "example_request": self.example_body,
        }


def validate(config: RunConfig, prices: PriceTable) -> Validation:
    """Check every row (within --limit and --ids) as ``run`` would, sending nothing.

    Whole-file problems (duplicate ids, shared output names) are listed, not raised, so the
    rows are still checked; raises UsageError for a file that cannot be read at all.
    """
    check_options(config)
    provider_for(config)  # settings the route cannot take are said before any row is read
    preset = config.ids is not None
    config, opened = open_settled(config, config.ids)
    with check_pass(config, opened, None) as checked:
        notes = [] if preset else checked.header.notes
        result = Validation(notes=notes, problems=checked.problems, ids=config.ids)
        result.route, result.mode = config.provider, config.mode
        result.problems += _mode_problems(config)
        price = functools.partial(prices.per_image, route=config.provider)
        sources = SourceCache(max_bytes=0)  # sizes only: nothing needs to stay encoded
        planner = every_row(checked, sources)
        sizes: dict[str, int] = {}
        for batch in planner:
            for item in batch.items:
                result.rows += 1
                if isinstance(item, InvalidRow):
                    result.invalid_count += 1
                    if len(result.invalid) < MAX_LISTED:
                        result.invalid.append(item)
                    continue
                result.valid += 1
                size = effective_size(item)
                result.images_by_model_size[(item.model, size)] += 1
                result.standard_usd += price(item.model, size)
                result.flex_usd += price(item.model, size, tier=Tier.FLEX)
                result.batch_usd += price(item.model, size, batch=True)
                result.chosen_usd += price(item.model, size, tier=item.tier)
                result.tiers[item.tier.value] += 1
                result.upload_bytes += _upload_bytes(item, sizes)
                if result.example_body is None:
                    result.example_body = _example(item, config, sources)
    offered = provider_for(config).capabilities.tiers
    for tier in sorted(set(result.tiers) - set(offered)):
        result.notes.append(
            f"--provider {config.provider} does not offer the {tier} tier: its rows would "
            "stop the run (or go standard with --tier-fallback standard)"
        )
    result.warning_count = planner.resolver.warning_count
    result.warnings = planner.resolver.warnings[:MAX_LISTED]
    result.source_files = len(sizes)
    return result


def _mode_problems(config: RunConfig) -> list[str]:
    """A route (or build) that cannot take ``--mode batch``: said before any row is sent."""
    try:
        check_mode(config)
    except UsageError as e:
        return [str(e)]
    return []


def _upload_bytes(job: Job, sizes: dict[str, int]) -> int:
    """Bytes this row's request carries: base64 of each local image, plus the text."""
    total = len(job.prompt.encode()) + len((job.system_instruction or "").encode())
    for image in job.images:
        if is_link(image):
            total += len(image)
            continue
        if image not in sizes:
            sizes[image] = os.path.getsize(image)
        total += inline_bytes(sizes[image])
    return total


def _example(job: Job, config: RunConfig, sources: SourceCache) -> dict[str, Any]:
    """The first valid row's request body, as the route sends it, with image data (base64,
    ``data:`` URLs) shortened for reading."""
    body: dict[str, Any] = json.loads(provider_for(config).prepare(job, sources).body)
    return {"model": job.model, "row_id": job.row_id, "line": job.line, "body": _short(body)}


def _short(value: Any, key: str = "") -> Any:
    """``value`` with its image data cut: native ``inlineData.data``, and ``data:`` URLs."""
    if isinstance(value, dict):
        return {k: _short(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_short(v) for v in value]
    image = key == "data" or (isinstance(value, str) and value.startswith("data:"))
    if image and isinstance(value, str) and len(value) > _EXAMPLE_DATA_CHARS:
        return f"{value[:_EXAMPLE_DATA_CHARS]}... ({len(value)} chars)"
    return value


def _estimate(found: Validation, prices: PriceTable) -> list[str]:
    """Cost at standard, Flex and Batch side by side, and at the tiers the rows ask for."""
    price = functools.partial(prices.per_image, route=found.route)
    lines = []
    if found.mode is RunMode.BATCH:  # the price this run would pay, before the comparison
        lines.append(f"estimated cost with --mode batch: ${found.batch_usd:,.2f} at the batch "
                     f"price (online: ${found.standard_usd:,.2f} at standard)")  # fmt: skip
    lines.append("estimated cost (valid rows x price per image):")
    lines.append(f"  {'model':<32} {'size':>4} {'images':>8} {'standard':>11} {'flex':>11} "
                 f"{'batch':>11}")  # fmt: skip

    def usd(*amounts: float) -> str:
        return " ".join(f"{f'${a:,.2f}':>11}" for a in amounts)

    for (model, size), n in sorted(found.images_by_model_size.items()):
        costs = (
            price(model, size),
            price(model, size, tier=Tier.FLEX),
            price(model, size, batch=True),
        )
        lines.append(f"  {model:<32} {size:>4} {n:>8} " + usd(*(n * c for c in costs)))
    total = f"  {'total':<32} {'':>4} {found.valid:>8} "
    lines.append(total + usd(found.standard_usd, found.flex_usd, found.batch_usd))
    if set(found.tiers) - {Tier.STANDARD.value}:
        asked = ", ".join(f"{n} {tier}" for tier, n in sorted(found.tiers.items()))
        lines.append(f"  at the tiers asked ({asked}): ${found.chosen_usd:,.2f}")
    return lines


def format_validation(found: Validation, prices: PriceTable, manifest: Path) -> str:
    """The report for people."""
    lines = [f"note: {note}" for note in found.notes]
    lines += [f"problem: {problem}" for problem in found.problems]
    lines.append(
        f"{manifest}: {found.rows} rows: {found.valid} valid, {found.invalid_count} invalid, "
        f"{found.warning_count} warnings"
    )
    if found.invalid or found.warnings:
        lines.append(f"({SHEET_ROWS})")
    listed = (  # (title, rows as (line, id, what), how many in all, how many to show, hint)
        (
            "invalid rows (cost nothing; fix them and run again):",
            [(r.line, r.row_id, f"{r.field}: {r.reason}") for r in found.invalid],
            found.invalid_count,
            50,
            " (--format json lists them)",
        ),
        (
            "warnings:",
            [(w.line, w.row_id, f"{w.field}: {w.message}") for w in found.warnings],
            found.warning_count,
            20,
            "",
        ),
    )
    for title, items, count, most, more in listed:
        if items:
            lines.append(title)
            lines += [f"  {row_label(ln, rid, found.ids)} {what}" for ln, rid, what in items[:most]]
            if count > most:
                lines.append(f"  ... and {count - most} more{more}")
    lines += _estimate(found, prices)
    lines.append(
        f"upload: {found.upload_bytes / 1e6:,.1f} MB in requests "
        f"({found.source_files} distinct source files)"
    )
    if found.example_body is not None:
        example = found.example_body
        lines.append(
            f"example request ({example['model']}, "
            f"{row_label(example['line'], example['row_id'], found.ids)}):"
        )
        lines.append(json.dumps(found.example_body["body"], indent=1))
    return "\n".join(lines)
