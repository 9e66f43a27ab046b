"""The one pass over a manifest: opened once, its header settled, every row checked as a whole.

A run (and validate, and the preview of a folder) reads its manifest once:
1. ``open_settled``: the file is opened and its header read, once; the id scheme is settled
   from it (``--id-column``, the folder's record, or the header).
2. ``check_pass``: every row within ``--limit`` is parsed once. The whole-manifest checks
   (duplicate or unusable ids, output names shared by several rows) see every batch, and the
   parsed batches are kept in a ``Spool`` for the plan, which reads them back instead of
   parsing the file again. What the pass learnt (the ids, how many rows) is kept for the
   scan, ``--strict`` and the count of rows left after a halt.
Rows past ``--limit`` are parsed only if someone asks how many there are (``count_all``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

import pyarrow as pa
import structlog

from pipeline.core.config import RunConfig
from pipeline.core.errors import UsageError
from pipeline.core.idscheme import IdScheme
from pipeline.plan.done import DoneRows
from pipeline.plan.idcheck import IdCheck
from pipeline.plan.manifest import Header, Opened, RowBatch, open_manifest, read_batches
from pipeline.plan.names import output_name, template_fields
from pipeline.plan.scan import Scan, check_options, scan
from pipeline.plan.spool import Spool
from pipeline.store.ledger import Ledger

log = structlog.get_logger("nanobatch")


@dataclass
class CheckedManifest:
    """What the one pass over the manifest found, and its rows for the plan."""

    config: RunConfig  # the run's, its id scheme settled
    header: Header
    problems: list[str]  # whole-manifest: a run would not start
    ids: pa.ChunkedArray  # every row's id within --limit, in manifest order
    required: list[str]  # the columns the run needs
    opened: Opened
    spool: Spool | None  # None: it could not be written, the plan parses the file again

    @property
    def rows(self) -> int:
        """Rows within --limit."""
        return len(self.ids)

    def batches(self) -> Iterator[RowBatch]:
        """The rows within --limit, as the pass parsed them."""
        if self.spool is not None:
            return self.spool.read()
        c = self.config
        return read_batches(
            c.manifest, c.batch_rows, c.limit, self.required, sheet=c.sheet, ids=c.ids
        )

    def count_all(self) -> int:
        """Rows in the whole file, past --limit too (those are parsed now, only counted)."""
        return self.rows if self.config.limit is None else self.opened.count_all()

    def close(self) -> None:
        """Remove the spooled rows."""
        if self.spool is not None:
            self.spool.remove()

    def __enter__(self) -> CheckedManifest:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_settled(
    config: RunConfig, recorded: IdScheme | None = None, finished: int = 0
) -> tuple[RunConfig, Opened]:
    """The manifest opened and the config with its id scheme settled (``--id-column``, the
    folder's, or the header's); the header's notes are for the user, once."""
    opened = open_manifest(
        config.manifest,
        sheet=config.sheet,
        id_column=config.id_column,
        recorded=recorded,
        finished=finished,
        batch_rows=config.batch_rows,
    )
    if config.prompt_template and "prompt" in columns_of(opened.header):
        opened.header.notes.append(
            "--prompt-template builds every prompt: the manifest's prompt column is not sent"
        )
    return replace(config, ids=opened.header.ids), opened


def check_pass(
    config: RunConfig, opened: Opened, spool_in: Path | None, *, keep_rows: bool = True
) -> CheckedManifest:
    """Parse every row (within --limit) once: the whole-manifest checks, and the rows kept in
    a spool under ``spool_in`` (None: the system's temp folder) for the plan."""
    required, stems = columns_and_names(config, opened.header)
    check = IdCheck(opened.header.ids, stems)
    spool = Spool(spool_in) if keep_rows else None
    try:
        for batch in opened.rows(required, config.limit):
            check.add(batch)
            if spool is not None:
                try:
                    spool.write(batch)
                except OSError as e:
                    # Degraded, not stopped: the plan parses the file again instead.
                    log.warning("manifest.spool_failed", path=str(spool.path), error=str(e))
                    spool.remove()
                    spool = None
        problems, ids = check.finish()
    except BaseException:
        if spool is not None:
            spool.remove()
        raise
    return CheckedManifest(config, opened.header, problems, ids, required, opened, spool)


def check_manifest(config: RunConfig, done: DoneRows) -> Scan:
    """Stop on whole-manifest problems; else what there is to do (one pass, no rows kept)."""
    check_options(config)
    config, opened = open_settled(config)
    checked = check_pass(config, opened, None, keep_rows=False)
    raise_problems(checked)
    return scan(config, done, checked.ids)


def raise_problems(checked: CheckedManifest) -> None:
    """Stop on whole-manifest problems before anything is sent."""
    if checked.problems:
        raise UsageError(f"{checked.config.manifest}: " + "; ".join(checked.problems))


def columns_and_names(
    config: RunConfig, header: Header
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

    named = template is not None or "output_name" in columns_of(header)
    return required, stems if named else None


def columns_of(header: Header) -> list[str]:
    """The header's column names, known ones as nanobatch spells them."""
    return [header.binding.renames.get(n, n) for n in header.names]


def ledger_ids(ledger: Ledger) -> Iterator[pa.Array]:
    """The ledger's row ids, a row group at a time."""
    for batch in ledger.iter_batches(["row_id"]):
        yield batch.column("row_id")
