"""What this run has to do: the manifest's rows minus the ones the ledger says are done.

Rows are filtered a batch at a time with a vectorised ``is_in`` against the done ids. A done
row is skipped only while its fingerprint still matches (the user did not edit its prompt,
settings or reference photos); that check builds the row's request description but never
reads more than each distinct source file once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import structlog

from pipeline.core.config import RunConfig
from pipeline.core.errors import UsageError
from pipeline.core.idscheme import IdScheme
from pipeline.core.models import check_model_id, resolve_model
from pipeline.core.types import InvalidRow, Job, Status
from pipeline.plan import rowids
from pipeline.plan.fingerprint import request_fingerprint
from pipeline.plan.idcheck import scan_ids
from pipeline.plan.manifest import Header, RowBatch, inspect, read_batches
from pipeline.plan.rowimages import is_link
from pipeline.plan.rows import Defaults, RowResolver, name_limit, output_name, template_fields
from pipeline.plan.sources import SourceCache
from pipeline.store.ledger import Ledger

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


@dataclass(slots=True)
class DoneRows:
    """Rows to leave alone; the fingerprints they were made with are read only if needed."""

    ids: pa.Array
    ledger: Ledger | None = None
    keep: tuple[str, ...] = ()
    redone: Redone | None = None
    _fingerprints: pa.Array | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def fingerprints(self) -> pa.Array:
        """Aligned with ``ids`` (the ledger is read the same way twice)."""
        if self._fingerprints is None:
            self._fingerprints = _done_column(self.ledger, self.keep, "fingerprint", self.redone)
        return self._fingerprints


@dataclass(frozen=True, slots=True)
class Redone:
    """Rows ``--rerun`` selects that are left alone all the same: they finished (as
    succeeded or refused) at or after ``since``, so a continued rerun already redid them."""

    statuses: tuple[str, ...]
    since: datetime


def done_rows(ledger: Ledger, rerun: frozenset[Status], before: datetime | None = None) -> DoneRows:
    """Rows whose last outcome is finished and not selected by ``--rerun``; with ``before``
    (``--rerun-before``), succeeded or refused rows finished since then are kept too."""
    keep = tuple(s.value for s in FINISHED if s not in rerun)
    paid = tuple(s.value for s in (Status.SUCCEEDED, Status.REFUSED) if s in rerun)
    redone = Redone(paid, before) if before is not None and paid else None
    return DoneRows(_done_column(ledger, keep, "row_id", redone), ledger, keep, redone)


def _done_column(
    ledger: Ledger | None, keep: tuple[str, ...], column: str, redone: Redone | None = None
) -> pa.Array:
    """One column of the done rows, read a row group at a time (a whole-file read of a
    million-row ledger needs several times its size in scratch memory)."""
    chunks = []
    if ledger is not None and (keep or redone):
        statuses = pa.array(keep, pa.string())
        wanted = ["status", column] + (["finished_at"] if redone else [])
        for batch in ledger.iter_batches(wanted):
            mask = pc.is_in(batch.column("status"), value_set=statuses)
            if redone is not None:
                recent = pc.and_(
                    pc.is_in(batch.column("status"), pa.array(redone.statuses, pa.string())),
                    pc.fill_null(
                        pc.greater_equal(batch.column("finished_at"), redone.since), False
                    ),
                )
                mask = pc.or_(mask, recent)
            chunks.append(batch.column(column).filter(mask))
    return pa.concat_arrays(chunks) if chunks else pa.array([], pa.string())


@dataclass(frozen=True, slots=True)
class Scan:
    """The whole manifest's ids against the ledger, computed once before the first request."""

    to_do: int  # rows to send: not done, and selected by --ids
    done_position: pa.ChunkedArray  # per manifest row: its index in DoneRows, null if not done
    selected: pa.ChunkedArray | None  # per manifest row: listed by --ids (None: all are)
    unknown_ids: tuple[str, ...] = ()  # listed by --ids but in no manifest row (within --limit)


def check_manifest(config: RunConfig, done: DoneRows) -> Scan:
    """Stop on whole-manifest problems before anything is sent; else what there is to do.

    One lookup for all rows (a hash table of the done ids is built once, not per batch).
    Done rows whose inputs changed are found later, as they are planned.
    """
    check_options(config)
    problems, ids = manifest_problems(config)
    if problems:
        raise UsageError(f"{config.manifest}: " + "; ".join(problems))
    return scan(config, done, ids)


def check_options(config: RunConfig) -> None:
    """Stop on a run-wide option that no row could be sent with."""
    model, _ = resolve_model(config.model)
    if why := check_model_id(model):
        raise UsageError(f"--model: {why}")


def manifest_problems(config: RunConfig) -> tuple[list[str], pa.ChunkedArray]:
    """Whole-manifest problems (duplicate or unusable ids, shared output names), and the ids."""
    required, stems = columns_and_names(config)
    return scan_ids(
        config.manifest,
        config.batch_rows,
        config.limit,
        required,
        stems,
        sheet=config.sheet,
        ids=config.ids,
        id_column=config.id_column,
    )


def scan(config: RunConfig, done: DoneRows, ids: pa.ChunkedArray) -> Scan:
    """What there is to do, given every id of the manifest."""
    position = pc.index_in(ids, value_set=done.ids)
    pending = pc.is_null(position)
    selected = None
    unknown: tuple[str, ...] = ()
    if config.ids_file is not None:
        wanted = read_ids_file(config.ids_file)
        selected = pc.is_in(ids, value_set=wanted)
        pending = pc.and_(pending, selected)
        unknown = _unknown_ids(config, wanted, ids)
    del ids
    pa.default_memory_pool().release_unused()  # the scan's hash tables: give them back now
    return Scan(int(pc.sum(pending).as_py() or 0), position, selected, unknown)


def _unknown_ids(config: RunConfig, wanted: pa.Array, ids: pa.ChunkedArray) -> tuple[str, ...]:
    """Ids the --ids file lists that no manifest row has: said once, never silently skipped."""
    unknown = wanted.filter(pc.invert(pc.is_in(wanted, value_set=ids)))
    if not len(unknown):
        return ()
    lower = pc.is_in(pc.utf8_lower(unknown), value_set=pc.utf8_lower(ids))
    in_other_case = int(pc.sum(lower).as_py() or 0)
    log.warning(
        "ids.unknown",
        ids_file=str(config.ids_file),
        count=len(unknown),
        first=unknown.slice(0, 5).to_pylist(),
        differ_only_in_case=in_other_case,
        meaning="listed ids in no manifest row"
        + (" within --limit" if config.limit is not None else "")
        + " are skipped; ids are case-sensitive",
    )
    return tuple(unknown.to_pylist())


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

    named = template is not None or "output_name" in _columns(config)
    return required, stems if named else None


def _columns(config: RunConfig) -> list[str]:
    header = inspect(
        config.manifest,
        sheet=config.sheet,
        id_column=config.id_column,
        recorded=config.ids,
        batch_rows=1,
    )
    return columns_of(header)


def columns_of(header: Header) -> list[str]:
    """The header's column names, known ones as nanobatch spells them."""
    return [header.binding.renames.get(n, n) for n in header.names]


def folder_ids(config: RunConfig) -> RunConfig:
    """The config reading ids as its output folder does (its record, else the header's), for
    commands that look at a folder after or between runs."""
    if config.ids is not None:
        return config
    recorded, rows = rowids.load(config.out_dir, ledger_ids(Ledger(config.out_dir)))
    return settle_ids(config, recorded, rows)[0]


def ledger_ids(ledger: Ledger) -> Iterator[pa.Array]:
    """The ledger's row ids, a row group at a time."""
    for batch in ledger.iter_batches(["row_id"]):
        yield batch.column("row_id")


def settle_ids(
    config: RunConfig, recorded: IdScheme | None = None, finished: int = 0
) -> tuple[RunConfig, Header]:
    """The config with its id scheme settled (``--id-column``, the folder's, or the header's),
    and the manifest's header with the notes to tell the user once."""
    header = inspect(
        config.manifest,
        sheet=config.sheet,
        id_column=config.id_column,
        recorded=recorded,
        finished=finished,
        batch_rows=config.batch_rows,
    )
    if config.prompt_template and "prompt" in columns_of(header):
        header.notes.append(
            "--prompt-template builds every prompt: the manifest's prompt column is not sent"
        )
    return replace(config, ids=header.ids), header


def read_ids_file(path: Path) -> pa.Array:
    """Row ids listed one per line (blank lines and ``#`` comments ignored)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--ids {path} cannot be read: {e}") from None
    ids = [line.strip() for line in text.splitlines()]
    return pa.array([i for i in ids if i and not i.startswith("#")], pa.string())


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
        *,
        verify_done: bool = True,
    ) -> None:
        self.config = config
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
            ),
            prices=config.prices,
        )
        self.required = columns_and_names(config)[0]

    def __iter__(self) -> Iterator[PlannedBatch]:
        c = self.config
        batches = read_batches(
            c.manifest,
            c.batch_rows,
            c.limit,
            self.required,
            sheet=c.sheet,
            ids=c.ids,
            id_column=c.id_column,
        )
        for batch in batches:
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
