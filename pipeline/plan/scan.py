"""What there is to do: every id of the manifest against the done rows and ``--ids``.

One lookup for all rows (a hash table of the done ids is built once, not per batch), before
the first request; the plan then slices it batch by batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import structlog

from pipeline.core.config import RunConfig
from pipeline.core.errors import UsageError
from pipeline.core.models import check_model_id, resolve_model
from pipeline.core.routes import Route
from pipeline.plan.done import DoneRows

log = structlog.get_logger("nanobatch")


@dataclass(frozen=True, slots=True)
class Scan:
    """The whole manifest's ids against the ledger, computed once before the first request."""

    to_do: int  # rows to send: not done, and selected by --ids
    done_position: pa.ChunkedArray  # per manifest row: its index in DoneRows, null if not done
    selected: pa.ChunkedArray | None  # per manifest row: listed by --ids (None: all are)
    unknown_ids: tuple[str, ...] = ()  # listed by --ids but in no manifest row (within --limit)


def check_options(config: RunConfig) -> None:
    """Stop on a run-wide option that no row could be sent with."""
    model, _ = resolve_model(config.model)
    if why := check_model_id(model, in_path=config.provider is not Route.OPENAI_CHAT):
        raise UsageError(f"--model: {why}")


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


def read_ids_file(path: Path) -> pa.Array:
    """Row ids listed one per line (blank lines and ``#`` comments ignored)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--ids {path} cannot be read: {e}") from None
    ids = [line.strip() for line in text.splitlines()]
    return pa.array([i for i in ids if i and not i.startswith("#")], pa.string())
