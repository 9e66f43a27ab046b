"""One parse of the manifest per run: the check pass keeps what the plan, --strict and the
closing message need, so the file is opened and read once, whatever the run does; and validate
and run agree on which rows are invalid."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.commands.run import remaining_usd, run_and_report
from pipeline.commands.validate import validate
from pipeline.core.errors import UsageError
from pipeline.emulator import EmulatorConfig, EmulatorTransport, Payload, create_app
from pipeline.plan import manifest, manifest_csv
from pipeline.plan.spool import SPOOL_NAME, Spool
from pipeline.run.scheduler import run_manifest
from tests.helpers import make_image, run_config, write_csv, write_parquet

ROWS = 30
BATCH_ROWS = 8  # a Parquet manifest is read this many rows at a time: 4 batches
PRICE = 0.067  # the default model at 1K, as the price table says


@dataclass
class Reads:
    """Every opening of a manifest, and how many of its batches each read."""

    batches: list[int] = field(default_factory=list)

    def wrap(self, real: Any) -> Any:
        def opened(*args: Any) -> tuple[list[str], Iterator[pa.RecordBatch]]:
            notes, raw = real(*args)
            self.batches.append(0)
            index = len(self.batches) - 1

            def counted() -> Iterator[pa.RecordBatch]:
                for batch in raw:
                    self.batches[index] += 1
                    yield batch

            return notes, counted()

        return opened


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Reads:
    found = Reads()
    monkeypatch.setattr(manifest, "_open_batches", found.wrap(manifest._open_batches))
    return found


def catalogue(tmp_path: Path) -> Path:
    rows = [{"id": f"r{i:02d}", "prompt": f"a lamp {i}"} for i in range(ROWS)]
    return write_parquet(tmp_path / "m.parquet", rows)


def command(config: Any, argv: list[str]) -> tuple[int, list[str]]:
    app = create_app(EmulatorConfig(payload=Payload.COMPACT))
    said: list[str] = []
    code = run_and_report(config, EmulatorTransport(app), argv=argv, out=lambda _: None,
                          err=said.append)  # fmt: skip
    return code, said


@pytest.mark.parametrize("strict", [False, True])
def test_a_run_and_its_resume_read_the_manifest_once_each(
    tmp_path: Path, reads: Reads, strict: bool
) -> None:
    out = tmp_path / "out"
    config = run_config(catalogue(tmp_path), out, batch_rows=BATCH_ROWS, strict=strict)
    assert command(config, [])[0] == 0
    assert reads.batches == [4]  # one opening, each batch read once
    assert command(config, [])[0] == 0  # nothing left to do: still the one pass
    assert reads.batches == [4, 4]
    assert not (out / SPOOL_NAME).exists()  # the spooled rows are gone with the run
    assert len(pq.read_table(out / "ledger.parquet")) == ROWS


def test_a_run_the_cap_stops_counts_what_is_left_without_reading_again(
    tmp_path: Path, reads: Reads
) -> None:
    out = tmp_path / "out"
    config = run_config(catalogue(tmp_path), out, batch_rows=BATCH_ROWS, concurrency=4,
                        max_cost_usd=5 * PRICE + 0.01)  # fmt: skip
    code, said = command(config, ["run", "m.parquet", "--max-cost", "0.35"])
    assert code == 4
    assert reads.batches == [4]
    done = len(pq.read_table(out / "ledger.parquet"))
    assert f"{ROWS - done} rows left" in said[-1]
    again = shlex.split(said[-1].split("To continue: ", 1)[1])
    cap = float(again[again.index("--max-cost") + 1])
    # The whole job's cap: what was spent plus every row left at its price, rounded up.
    assert cap >= ROWS * PRICE - 1e-9
    assert cap == pytest.approx(remaining_usd(config) + done * PRICE, abs=0.01)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_limited_run_counts_the_rows_past_the_limit_in_the_same_pass(
    tmp_path: Path, reads: Reads, suffix: str
) -> None:
    rows = [{"id": f"r{i:02d}", "prompt": f"a lamp {i}"} for i in range(ROWS)]
    path = tmp_path / f"m{suffix}"
    path = write_csv(path, rows) if suffix == ".csv" else write_parquet(path, rows)
    config = run_config(path, tmp_path / "out", batch_rows=BATCH_ROWS, limit=10)
    code, said = command(config, [])
    assert code == 0
    assert len(reads.batches) == 1
    assert f"{ROWS - 10} rows of the manifest remain" in said[-1]


async def test_a_manifest_too_big_to_spool_is_read_again_not_refused(
    tmp_path: Path, reads: Reads, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(self: Spool, batch: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Spool, "write", full)
    out = tmp_path / "out"
    app = create_app(EmulatorConfig(payload=Payload.COMPACT))
    config = run_config(catalogue(tmp_path), out, batch_rows=BATCH_ROWS)
    result = await run_manifest(config, EmulatorTransport(app))
    assert result.by_status["succeeded"] == ROWS
    assert reads.batches == [4, 4]  # degraded: the plan parsed the file again
    assert not (out / SPOOL_NAME).exists()


def test_validate_and_run_agree_on_the_invalid_rows(tmp_path: Path) -> None:
    photo = make_image(tmp_path / "photo.png")
    rows: list[dict[str, Any]] = [
        {"id": "ok", "prompt": "a lamp"},
        {"id": "size", "prompt": "a lamp", "image_size": "1k"},
        {"id": "ratio", "prompt": "a lamp", "aspect_ratio": "5:3"},
        {"id": "empty", "prompt": "  "},
        {"id": "photo", "prompt": "a lamp", "images": str(photo)},
        {"id": "missing", "prompt": "a lamp", "images": str(tmp_path / "nope.png")},
    ]
    path = write_csv(tmp_path / "m.csv", rows)
    config = run_config(path, tmp_path / "out")
    found = validate(config, config.prices)
    invalid = {r.row_id for r in found.invalid}
    assert invalid == {"size", "ratio", "empty", "missing"}

    app = create_app(EmulatorConfig(payload=Payload.COMPACT))
    strict = run_config(path, tmp_path / "strict", strict=True)
    with pytest.raises(UsageError, match=f"--strict: {len(invalid)} invalid rows, nothing sent"):
        anyio.run(run_manifest, strict, EmulatorTransport(app))
    assert app.stats_snapshot()["requests"] == 0

    anyio.run(run_manifest, config, EmulatorTransport(app))
    ledger = pq.read_table(tmp_path / "out" / "ledger.parquet").to_pylist()
    recorded = {r["row_id"]: (r["reason"], r["error"]) for r in ledger if r["status"] == "invalid"}
    checked = {r.row_id: (f"INVALID_{r.field.upper()}", r.reason) for r in found.invalid}
    assert recorded == checked


@pytest.mark.parametrize("limit", [1, 7, 25, 60, None])
def test_rows_past_the_limit_are_counted_where_the_pass_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reads: Reads, limit: int | None
) -> None:
    monkeypatch.setattr(manifest_csv, "BLOCK_SIZE", 128)  # many small batches
    lines = ["id,prompt"] + [f"r{i:02d},a lamp {i}" if i % 5 else ",  " for i in range(50)]
    path = tmp_path / "m.csv"
    path.write_text("\n".join(lines) + "\n")
    opened = manifest.open_manifest(path)
    got = [i for batch in opened.rows(limit=limit) for i in batch.ids.to_pylist()]
    assert got == [f"r{i:02d}" for i in range(50) if i % 5][:limit]
    assert opened.count_all() == 40  # the blank rows are not rows
    assert len(reads.batches) == 1
