"""The provenance lookup at scale: a resume of a folder with N provenance records looks up a
pending row (which builds the index) and then 10,000 rows with no record.

Run alone: ``uv run python scripts/provenance_scale.py DIR [--records 1000000]``; DIR's
journal is built on the first run (one line per row, shaped as a run writes them) and reused.
Prints the first lookup's CPU, a later lookup's, and the process's peak RSS before and after
(pyarrow loaded before, as a run has it).
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import pyarrow.compute
import pyarrow.parquet  # noqa: F401

from pipeline.store import provenance
from pipeline.store.journal import encode_line

_CHUNK = 10_000  # lines encoded per write while building the journal
_PROBES = 10_000


def build(journal: Path, records: int) -> None:
    """``records`` lines, one per row, as ``provenance.store`` writes them."""
    partial = journal.with_suffix(".partial")
    with open(partial, "wb") as f:
        for start in range(0, records, _CHUNK):
            lines = []
            for i in range(start, min(start + _CHUNK, records)):
                stem = f"sku-{i:07d}"
                lines.append(encode_line({
                    "stem": stem, "row_id": stem, "fingerprint": f"{i:064x}",
                    "files": [[f"images/{stem}.png", f"{i * 7:064x}"]],
                    "cost_usd": 0.039, "tier": "standard", "at": 1.7e9 + i,
                }))  # fmt: skip
            f.write(b"".join(lines))
    partial.replace(journal)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    journal = args.dir / provenance.JOURNAL_FILE
    if not journal.exists():
        build(journal, args.records)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.process_time()
    found = provenance.read(args.dir, "sku-0000042")
    first = time.process_time() - started
    started = time.process_time()
    for i in range(_PROBES):
        provenance.read(args.dir, f"pending-{i}")
    later = (time.process_time() - started) / _PROBES
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{journal.stat().st_size / 1e6:.0f} MB journal; found: {found is not None}; first lookup "
        f"{first:.2f} s CPU, later ones {later * 1e6:.0f} us; peak RSS {rss_before:.0f} -> "
        f"{rss_after:.0f} MB"
    )


if __name__ == "__main__":
    main()
