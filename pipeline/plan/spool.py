"""The manifest's parsed rows, kept in a scratch file between the check pass and the plan.

A run checks the whole manifest before it sends anything (duplicate ids, shared output names),
and plans it a batch at a time afterwards. Parsing it twice costs a CSV's or a workbook's
parse again (0.5 s per million CSV rows, minutes for a large .xlsx); keeping the batches in
memory grows with the manifest. So the check pass writes each parsed batch here, as Arrow IPC
(uncompressed: a million catalogue rows, 100 MB, write in about 0.1 s and read back in a few
hundredths), and the plan reads them back. The file is a ``.tmp-`` file of the output
folder, removed at the end of the run and, after a crash, when the ledger is next opened.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
from pyarrow import ipc

from pipeline.plan.manifest import RowBatch

SPOOL_NAME = ".tmp-manifest.arrow"


class Spool:
    """Row batches written once, in order, then read back as often as needed.

    Each record batch is the manifest batch's columns followed by two of ours, the row ids and
    the data row numbers; they are found by position, so no manifest column name can clash.
    """

    def __init__(self, folder: Path | None) -> None:
        if folder is None:  # a command that must not write into the output folder
            fd, name = tempfile.mkstemp(prefix="nanobatch-", suffix=".arrow")
            os.close(fd)
            self.path = Path(name)
        else:
            self.path = folder / SPOOL_NAME
        self._writer: ipc.RecordBatchStreamWriter | None = None
        self._schema: pa.Schema | None = None
        self.rows = 0

    def write(self, batch: RowBatch) -> None:
        n = batch.table.num_rows
        lines = batch.lines
        if lines is None:
            lines = pa.array(range(batch.first_line, batch.first_line + n), pa.int64())
        record = pa.RecordBatch.from_arrays(
            [*batch.table.columns, batch.ids, lines],
            names=[*batch.table.schema.names, "row id", "line"],
        )
        if self._writer is None:
            self._schema = record.schema
            self._writer = ipc.new_stream(str(self.path), record.schema)
        elif record.schema != self._schema:
            record = record.cast(self._schema)
        self._writer.write_batch(record)
        self.rows += n

    def close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def read(self) -> Iterator[RowBatch]:
        """The batches as written (first positions and row numbers as the manifest has them)."""
        self.close_writer()
        if self._schema is None:
            return
        kept = 1
        # Read, not memory-mapped: a mapped page stays in the process's resident set until
        # the whole file is unmapped, so the spool's size would count as memory.
        with pa.OSFile(str(self.path)) as source, ipc.open_stream(source) as reader:
            for record in reader:
                n = record.num_rows
                if not n:
                    continue
                width = record.num_columns - 2
                lines: pa.Array | None = record.column(width + 1)
                assert lines is not None
                if lines[0].as_py() == kept and lines[n - 1].as_py() == kept + n - 1:
                    lines = None  # no row was left out: the row number is the position
                table = record.select(list(range(width)))
                yield RowBatch(kept, record.column(width), table, lines)
                kept += n

    def remove(self) -> None:
        self.close_writer()
        self.path.unlink(missing_ok=True)
