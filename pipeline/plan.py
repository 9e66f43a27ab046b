"""What this run has to do: the manifest's rows minus the ones the ledger says are done.

Rows are filtered a batch at a time with a vectorised ``is_in`` against the done ids. A done
row is skipped only while its fingerprint still matches (the user did not edit its prompt,
settings or reference photos); that check builds the row's request description but never
reads more than each distinct source file once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import structlog

from pipeline.config import RunConfig
from pipeline.errors import UsageError
from pipeline.ledger import Ledger
from pipeline.manifest import RowBatch, read_batches, scan_ids
from pipeline.request import fingerprint, image_digest
from pipeline.rows import Defaults, RowResolver, output_name, template_fields
from pipeline.sources import SourceCache
from pipeline.types import InvalidRow, Job, Status

log = structlog.get_logger("nanobatch")

# Statuses a rerun may leave alone; --rerun picks which of them are sent again. Invalid rows
# are always validated again: that is free, and the user may have fixed the file.
FINISHED = (Status.SUCCEEDED, Status.REFUSED, Status.FAILED)


@dataclass(frozen=True, slots=True)
class PlannedBatch:
    """The pending rows of one manifest batch, and how many were skipped as already done."""

    items: list[Job | InvalidRow]
    skipped: int
    changed: int = 0  # done rows sent again because their fingerprint changed


@dataclass(frozen=True, slots=True)
class DoneRows:
    """Rows to leave alone, with the fingerprints they were made with."""

    ids: pa.Array
    fingerprints: pa.Array

    def __len__(self) -> int:
        return len(self.ids)


def done_rows(ledger: Ledger, rerun: frozenset[Status]) -> DoneRows:
    """Rows whose last outcome is finished and not selected by ``--rerun``."""
    table = ledger.read(["row_id", "status", "fingerprint"])
    keep = [s.value for s in FINISHED if s not in rerun]
    if table is None or not keep:
        return DoneRows(pa.array([], pa.string()), pa.array([], pa.string()))
    done = table.filter(pc.is_in(table["status"], value_set=pa.array(keep)))
    return DoneRows(done["row_id"].combine_chunks(), done["fingerprint"].combine_chunks())


def check_manifest(config: RunConfig, done: DoneRows) -> int:
    """Stop on whole-manifest problems before anything is sent; else how many rows to do.

    The count is for progress displays: rows that are not done (or are selected by --ids);
    done rows whose inputs changed are found later, as they are planned.
    """
    required, stems = columns_and_names(config)
    problems, ids = scan_ids(config.manifest, config.batch_rows, config.limit, required, stems)
    if problems:
        raise UsageError(f"{config.manifest}: " + "; ".join(problems))
    pending = pc.invert(pc.is_in(ids, value_set=done.ids))
    if config.ids_file is not None:
        pending = pc.and_(pending, pc.is_in(ids, value_set=read_ids_file(config.ids_file)))
    return int(pc.sum(pending).as_py() or 0)


def columns_and_names(
    config: RunConfig,
) -> tuple[list[str], Callable[[RowBatch], list[str]] | None]:
    """The columns the run needs, and how to compute output names if the manifest has any."""
    try:
        required = template_fields(config.prompt_template) if config.prompt_template else []
        required += template_fields(config.name_template) if config.name_template else []
    except ValueError as e:
        raise UsageError(str(e)) from None
    if not config.prompt_template:
        required.append("prompt")
    template = config.name_template

    def stems(batch: RowBatch) -> list[str]:
        rows = batch.table.to_pylist()
        ids = batch.ids.to_pylist()
        return [output_name(row, template) or i for row, i in zip(rows, ids, strict=True)]

    named = template is not None or "output_name" in _columns(config.manifest)
    return required, stems if named else None


def _columns(path: Path) -> list[str]:
    for batch in read_batches(path, 1, None, ()):
        return list(batch.table.schema.names)
    return []


def read_ids_file(path: Path) -> pa.Array:
    """Row ids listed one per line (blank lines and ``#`` comments ignored)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--ids {path} cannot be read: {e}") from None
    ids = [line.strip() for line in text.splitlines()]
    return pa.array([i for i in ids if i and not i.startswith("#")], pa.string())


class Planner:
    """Turns manifest batches into the work of this run."""

    def __init__(self, config: RunConfig, done: DoneRows, sources: SourceCache) -> None:
        self.config = config
        self.done = done
        self.sources = sources
        self.only = read_ids_file(config.ids_file) if config.ids_file else None
        self.resolver = RowResolver(
            config.manifest.resolve().parent,
            Defaults(
                config.model,
                config.image_size,
                config.aspect_ratio,
                prompt_template=config.prompt_template,
                name_template=config.name_template,
                fit_images=config.fit_images,
            ),
        )
        self.required = columns_and_names(config)[0]

    def __iter__(self) -> Iterator[PlannedBatch]:
        c = self.config
        for batch in read_batches(c.manifest, c.batch_rows, c.limit, self.required):
            yield self._plan(batch)

    def _plan(self, batch: RowBatch) -> PlannedBatch:
        ids = batch.ids
        selected = (
            pa.array([True] * len(ids)) if self.only is None else pc.is_in(ids, value_set=self.only)
        )
        position = pc.index_in(ids, value_set=self.done.ids)  # null: not done
        done = pc.and_(selected, pc.is_valid(position))
        todo = pc.and_(selected, pc.invert(pc.is_valid(position)))
        items: list[Job | InvalidRow] = []
        changed = 0
        done_idx = pc.indices_nonzero(done)
        if len(done_idx):
            recorded = self.done.fingerprints.take(position.take(done_idx)).to_pylist()
            rows = batch.table.take(done_idx).to_pylist()
            for i, row, old in zip(done_idx.to_pylist(), rows, recorded, strict=True):
                job = self._resolve(batch, i, row)
                if old is None or not isinstance(job, Job):
                    continue  # no fingerprint to compare, or no longer sendable: keep the result
                if self._fingerprint(job) != old:
                    log.info("row.changed", row_id=job.row_id, line=job.line)
                    items.append(job)
                    changed += 1
        todo_idx = pc.indices_nonzero(todo)
        rows = batch.table.take(todo_idx).to_pylist()
        pairs = zip(todo_idx.to_pylist(), rows, strict=True)
        items += [self._resolve(batch, i, row) for i, row in pairs]
        items.sort(key=lambda item: item.line)
        skipped = len(done_idx) - changed
        return PlannedBatch(items, skipped, changed)

    def _resolve(self, batch: RowBatch, i: int, row: dict[str, object]) -> Job | InvalidRow:
        return self.resolver.resolve(batch.ids[i].as_py(), batch.first_line + i, row)

    def _fingerprint(self, job: Job) -> str:
        return fingerprint(job, [image_digest(p, self.sources) for p in job.images])
