"""What this run has to do: the manifest's rows minus the ones the ledger says are done.

Rows come from the one pass over the manifest (``checkpass``: its spooled batches), and are
filtered a batch at a time by the scan's per-row positions of the done ids. A done row is
skipped only while its fingerprint still matches (the user did not edit its prompt, settings
or reference photos); that check builds the row's request description but never reads more
than each distinct source file once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import pyarrow.compute as pc
import structlog

from pipeline.core.config import RunConfig, RunMode
from pipeline.core.routes import LINK_SCHEMES, Route
from pipeline.core.types import InvalidRow, Job
from pipeline.plan.done import DoneRows
from pipeline.plan.fingerprint import request_fingerprint
from pipeline.plan.manifest import RowBatch
from pipeline.plan.names import name_limit
from pipeline.plan.rowimages import is_link
from pipeline.plan.rows import Defaults, RowResolver
from pipeline.plan.scan import Scan
from pipeline.plan.sources import SourceCache

log = structlog.get_logger("nanobatch")


@dataclass(frozen=True, slots=True)
class PlannedBatch:
    """The pending rows of one manifest batch, and how many were skipped as already done."""

    items: list[Job | InvalidRow]
    skipped: int
    changed: int = 0  # done rows sent again because their fingerprint changed


class Planner:
    """Turns manifest batches into the work of this run.

    With ``verify_done`` (the default), every done row is resolved and its fingerprint
    compared, so an edited row is sent again; a caller that knows the inputs are unchanged
    (see ``planstate``) turns it off.
    """

    def __init__(
        self,
        config: RunConfig,
        done: DoneRows,
        sources: SourceCache,
        scan: Scan,
        batches: Callable[[], Iterable[RowBatch]],
        *,
        verify_done: bool = True,
    ) -> None:
        self.config = config
        self.batches = batches  # the manifest's rows (within --limit), parsed once
        self.done = done
        self.sources = sources
        self.scan = scan
        self.verify_done = verify_done
        self.source_paths: set[str] = set()  # distinct local source files of resolved rows
        self.finished = False  # every batch was planned
        self.resolver = RowResolver(
            config.manifest.resolve().parent,
            Defaults(
                config.model,
                config.image_size,
                config.aspect_ratio,
                prompt_template=config.prompt_template,
                name_template=config.name_template,
                fit_images=config.fit_images,
                name_max_bytes=name_limit(config.out_dir),
                tier=config.tier,
                links=LINK_SCHEMES[config.provider],
                model_id_in_body=config.provider is Route.OPENAI_CHAT,
                batch=config.mode is RunMode.BATCH,
            ),
            prices=config.prices,
        )

    def __iter__(self) -> Iterator[PlannedBatch]:
        for batch in self.batches():
            yield self._plan(batch)
        self.finished = True

    def _plan(self, batch: RowBatch) -> PlannedBatch:
        offset, n = batch.first_line - 1, len(batch.ids)
        position = self.scan.done_position.slice(offset, n).combine_chunks()
        is_done = pc.is_valid(position)
        if self.scan.selected is not None:
            selected = self.scan.selected.slice(offset, n).combine_chunks()
            is_done = pc.and_(is_done, selected)
            todo = pc.and_(pc.invert(pc.is_valid(position)), selected)
        else:
            todo = pc.invert(is_done)
        items: list[Job | InvalidRow] = []
        changed = 0
        done_idx = pc.indices_nonzero(is_done)
        if len(done_idx) and self.verify_done:
            recorded = self.done.fingerprints.take(position.take(done_idx)).to_pylist()
            rows = batch.table.take(done_idx).to_pylist()
            for i, row, old in zip(done_idx.to_pylist(), rows, recorded, strict=True):
                job = self._resolve(batch, i, row)
                if old is None or not isinstance(job, Job):
                    continue  # no fingerprint to compare, or no longer sendable: keep the result
                if request_fingerprint(job, self.sources) != old:
                    log.info("row.changed", row_id=job.row_id, line=job.line)
                    items.append(job)
                    changed += 1
        todo_idx = pc.indices_nonzero(todo)
        rows = batch.table.take(todo_idx).to_pylist()
        pairs = zip(todo_idx.to_pylist(), rows, strict=True)
        items += [self._resolve(batch, i, row) for i, row in pairs]
        items.sort(key=lambda item: item.line)
        return PlannedBatch(items, len(done_idx) - changed, changed)

    def _resolve(self, batch: RowBatch, i: int, row: dict[str, object]) -> Job | InvalidRow:
        resolved = self.resolver.resolve(batch.ids[i].as_py(), batch.line(i), row)
        if isinstance(resolved, Job):
            self.source_paths.update(p for p in resolved.images if not is_link(p))
        return resolved
