"""The journal fold at scale: a directory as a crashed N-row run leaves it, folded by a child.

- ``prepare(out_dir, records, cache)``: an output directory holding ``ledger.journal`` and
  ``attempts.journal`` with ``records`` records each (one per row, shaped as a real run writes
  them) and no Parquet files yet: the restart after a crash folds them all at once. The
  journals are built once into ``cache`` and copied for each measurement.
- ``python scripts/fold_scale.py DIR``: open the ledger in DIR (which folds the journals) and
  close it, nothing else; ``scripts/bench`` runs it as a measured child process.

Run alone: ``uv run python scripts/fold_scale.py --build DIR [--records 1000000]`` then
``/usr/bin/time -v uv run python scripts/fold_scale.py DIR``.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.store.journal import encode_line
from pipeline.store.ledger import (
    ATTEMPTS_JOURNAL_FILE,
    JOURNAL_FILE,
    AttemptRecord,
    Ledger,
    LedgerRecord,
)

_CHUNK = 10_000  # records encoded per write while building the fixture
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def _records(i: int) -> tuple[LedgerRecord, AttemptRecord]:
    """Row ``i``'s ledger record and its one attempt, with typical sizes and values."""
    row_id = f"row-{i:07d}"
    finished = _EPOCH + timedelta(milliseconds=i * 50)
    digest = hashlib.sha256(row_id.encode()).hexdigest()
    ledger = LedgerRecord(
        row_id=row_id,
        line=i + 1,
        status="succeeded",
        reason="STOP",
        model="gemini-3.1-flash-image-preview",
        prompt=f"Product photo {i} of a navy canvas sneaker on a white studio background",
        attempts=1,
        http_status=200,
        image_size="1K",
        output_paths=[f"images/{row_id}.png"],
        sha256=[digest],
        width=1024,
        height=1024,
        mime_type="image/png",
        prompt_tokens=24,
        output_tokens=1290,
        thoughts_tokens=0,
        latency_ms=8123.4,
        finished_at=finished,
        fingerprint=digest[::-1],
        metadata=f'{{"sku": "SKU{i}", "colour": "navy"}}',
        cost_usd=0.039,
    )
    attempt = AttemptRecord(
        row_id=row_id,
        attempt=1,
        started_at=finished - timedelta(seconds=8),
        finished_at=finished,
        latency_ms=8123.4,
        http_status=200,
        outcome="success",
        reason="STOP",
        wait_s=0.0,
        possibly_billed=True,
    )
    return ledger, attempt


def _build(folder: Path, records: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (
        open(folder / JOURNAL_FILE, "wb") as ledger,
        open(folder / ATTEMPTS_JOURNAL_FILE, "wb") as attempts,
    ):
        for start in range(0, records, _CHUNK):
            pairs = [_records(i) for i in range(start, min(start + _CHUNK, records))]
            ledger.write(b"".join(encode_line(asdict(r)) for r, _ in pairs))
            attempts.write(b"".join(encode_line(asdict(a)) for _, a in pairs))


def prepare(out_dir: Path, records: int, cache: Path) -> None:
    """``out_dir`` as a crashed ``records``-row run leaves it: journals only."""
    cached = cache / f"journals-{records}"
    if not (cached / JOURNAL_FILE).exists():
        partial = cache / f"journals-{records}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        _build(partial, records)
        partial.replace(cached)
    shutil.rmtree(out_dir, ignore_errors=True)
    (out_dir / "images").mkdir(parents=True)
    for name in (JOURNAL_FILE, ATTEMPTS_JOURNAL_FILE):
        shutil.copyfile(cached / name, out_dir / name)


def fold(out_dir: Path) -> int:
    """Open the ledger (the fold) and close it; returns the records recovered."""
    ledger = Ledger(out_dir)
    ledger.open()
    ledger.close()
    return ledger.recovered


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("dir", type=Path, help="output directory to fold (or to build)")
    parser.add_argument("--build", action="store_true", help="write the journals into DIR")
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    if args.build:
        prepare(args.dir, args.records, args.dir.parent / "fixtures")
        print(f"wrote {args.records:,} records into {args.dir}")
    else:
        print(f"folded {fold(args.dir):,} records in {args.dir}")


if __name__ == "__main__":
    main()
