"""The benchmark's fixtures: CSV manifests of distinct prompts, and a ledger in which every row
of such a manifest already succeeded (the resume scenario), each built once and reused."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipeline.core.models import DEFAULT_MODEL, resolve_model
from pipeline.core.types import Job
from pipeline.plan.fingerprint import fingerprint
from pipeline.store.ledger import LEDGER_FILE, SCHEMA

_PRODUCTS = ("canvas sneaker", "ceramic mug", "waxed backpack", "brass desk lamp", "linen shirt")
_COLOURS = ("red", "navy", "olive", "sand", "charcoal", "teal", "ochre")
_SCENES = (
    "on a white studio background, soft shadow",
    "on a marble kitchen counter, morning light",
    "in a minimalist living room, 35mm photo",
    "on a wooden table next to a window",
)


def _prompt(i: int) -> str:
    """A distinct, plausible prompt per row, so the emulator's image cache never helps."""
    product = _PRODUCTS[i % len(_PRODUCTS)]
    colour = _COLOURS[(i // len(_PRODUCTS)) % len(_COLOURS)]
    scene = _SCENES[(i // 35) % len(_SCENES)]
    return f"Product photo {i} of a {colour} {product} {scene}"


def _row_id(i: int) -> str:
    return f"row-{i:07d}"


def write_manifest(path: Path, rows: int) -> Path:
    """A CSV manifest with ``id`` and ``prompt`` columns (made once, then reused)."""
    if not path.exists():
        table = pa.table(
            {
                "id": pa.array([_row_id(i) for i in range(rows)], pa.string()),
                "prompt": pa.array([_prompt(i) for i in range(rows)], pa.string()),
            }
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        pacsv.write_csv(table, partial)
        partial.replace(path)
    return path


def write_done_ledger(out_dir: Path, rows: int, cache: Path) -> None:
    """A ledger in which every row of ``write_manifest(rows)`` succeeded, into ``out_dir``.

    Fingerprints are computed as the planner computes them (the row resolved against the run
    defaults: default model, no size, no ratio, no source images), so a resume must find every
    row done and unchanged. No image files: a resume reads only row_id, status and fingerprint.
    The file is built once into ``cache`` (a million fingerprints take seconds), keyed by the
    ledger schema and a sample fingerprint so a change to either rebuilds it, and copied for
    each run, so a run that rewrote it could not spoil the next.
    """
    model, _ = resolve_model(DEFAULT_MODEL)
    probe = fingerprint(Job(_row_id(0), 1, _prompt(0), (), model, None, None), [])
    key = hashlib.sha256(f"{SCHEMA}|{probe}|{rows}".encode()).hexdigest()[:16]
    cached = cache / f"done-{rows}-{key}.parquet"
    if not cached.exists():
        ids = [_row_id(i) for i in range(rows)]
        prompts = [_prompt(i) for i in range(rows)]
        prints = [
            fingerprint(Job(row_id, i + 1, prompt, (), model, None, None), [])
            for i, (row_id, prompt) in enumerate(zip(ids, prompts, strict=True))
        ]
        columns = {name: pa.nulls(rows, SCHEMA.field(name).type) for name in SCHEMA.names}
        columns.update(
            row_id=pa.array(ids, pa.string()),
            line=pa.array(range(1, rows + 1), pa.int64()),
            status=pa.array(["succeeded"] * rows, pa.string()),
            reason=pa.array(["STOP"] * rows, pa.string()),
            model=pa.array([model] * rows, pa.string()),
            fingerprint=pa.array(prints, pa.string()),
            prompt=pa.array(prompts, pa.string()),
        )
        cache.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(".partial")
        table = pa.table([columns[name] for name in SCHEMA.names], schema=SCHEMA)
        pq.write_table(table, partial, compression="zstd")
        partial.replace(cached)
    shutil.rmtree(out_dir, ignore_errors=True)
    (out_dir / "images").mkdir(parents=True)
    shutil.copyfile(cached, out_dir / LEDGER_FILE)
