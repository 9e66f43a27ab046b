"""verify / --fix, and adoption of images a crashed run wrote but did not record."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.commands.verify import fix, verify
from pipeline.core.clock import VirtualClock
from pipeline.core.config import RunConfig, RunMode
from pipeline.core.errors import LedgerDamaged, LedgerNotFolded, OutDirLocked
from pipeline.core.models import DEFAULT_MODEL
from pipeline.core.types import Job, Status
from pipeline.emulator import EmulatorApp, EmulatorTransport
from pipeline.emulator.batchspecs import parse_batch_delay
from pipeline.plan.fingerprint import request_fingerprint
from pipeline.plan.sources import SourceCache
from pipeline.providers.http import ClientPool
from pipeline.run.recovery import set_aside
from pipeline.run.result import RunResult
from pipeline.run.scheduler import Pipeline, run_manifest
from pipeline.store import provenance
from pipeline.store.ledger import Ledger
from pipeline.store.ledgerview import read_ledger_view
from tests.helpers import emulator, journal_records, run, run_config, write_csv


def ledger(out: Path) -> dict[str, dict[str, Any]]:
    return {r["row_id"]: r for r in pq.read_table(out / "ledger.parquet").to_pylist()}


def png(size: tuple[int, int] = (16, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (1, 2, 3)).save(buf, "PNG")
    return buf.getvalue()


class Earlier(NamedTuple):
    rows: list[dict[str, str]]
    manifest: Path
    out: Path
    app: EmulatorApp


async def earlier_run(tmp_path: Path, first: int, *, rows: int = 6, name: str = "m.csv") -> Earlier:
    """``rows`` rows, and a run (into ``tmp_path/out``) of a manifest ``name`` holding the
    ``first`` of them."""
    table = [{"id": f"r{i}", "prompt": f"p{i}"} for i in range(rows)]
    manifest = write_csv(tmp_path / name, table[:first])
    out = tmp_path / "out"
    app = emulator()
    await run(run_config(manifest, out), app)
    return Earlier(table, manifest, out, app)


async def test_verify_finds_missing_and_damaged_files_and_fix_makes_the_rerun_remake_them(
    tmp_path: Path,
) -> None:
    _, manifest, out, app = await earlier_run(tmp_path, 4, rows=4)
    assert verify(out).problems == []

    (out / "images" / "r0.png").unlink()
    damaged = out / "images" / "r1.png"
    damaged.write_bytes(damaged.read_bytes()[:100])
    (out / "images" / "stray.png").write_bytes(png())

    result = verify(out)
    assert {(p.row_id, p.what) for p in result.problems} == {
        ("r0", "missing"),
        ("r1", "checksum differs from the ledger"),
    }
    assert result.unreferenced == ["images/stray.png"]

    assert fix(out).fixed == 2
    rows = ledger(out)
    assert (rows["r0"]["status"], rows["r0"]["reason"]) == ("failed", "VERIFY_FAILED")
    assert (out / "broken" / "r1.png").exists()  # kept, not deleted

    app.reset_stats()
    await run(run_config(manifest, out), app)
    assert app.stats_snapshot()["requests"] == 2
    assert {r["status"] for r in ledger(out).values()} == {"succeeded"}
    assert verify(out).problems == []


async def test_images_a_crash_left_unrecorded_are_adopted_not_bought_again(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "m.csv", [{"id": f"r{i}", "prompt": f"p{i}"} for i in range(3)])
    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)
    # What a SIGKILL between the image rename and the journal fsync leaves behind:
    (out / "images" / "r1.png").write_bytes(png((20, 10)))
    (out / "images" / "gone-row.png").write_bytes(png())
    (out / "ledger.journal").write_bytes(b"")  # the unclean-shutdown marker

    app = emulator()
    await run(run_config(manifest, out), app)

    rows = ledger(out)
    assert rows["r1"]["status"] == "succeeded"
    assert rows["r1"]["reason"] == "ADOPTED"
    assert (rows["r1"]["width"], rows["r1"]["height"]) == (20, 10)
    assert app.stats_snapshot()["requests"] == 2  # r0 and r2 only
    assert (out / "orphans" / "gone-row.png").exists()
    assert verify(out).problems == []
    assert verify(out).unreferenced == []


async def test_an_image_a_record_was_written_for_but_lost_is_set_aside_not_taken_by_name(
    tmp_path: Path,
) -> None:
    """A power cut may persist an image's folder entry and not its provenance record's (the
    kernel writes folders back in any order): the image cannot say which request made it (the
    prompt may have been edited since), so it is not adopted by its name as an image from
    before records is; it is kept in orphans/ and the row is sent again."""
    earlier = await earlier_run(tmp_path, 1, rows=3)  # r0 done: this folder keeps records
    out, lost = earlier.out, png((20, 10))
    (out / "images" / "r1.png").write_bytes(lost)  # renamed into place; its record never was
    (out / "ledger.journal").write_bytes(b"")  # the unclean-shutdown mark
    earlier.app.reset_stats()

    await run(run_config(write_csv(earlier.manifest, earlier.rows), out), earlier.app)

    rows = ledger(out)
    assert earlier.app.stats_snapshot()["requests"] == 2  # r1 and r2
    assert rows["r1"]["status"] == "succeeded"
    assert rows["r1"]["reason"] != "ADOPTED"
    assert (out / "images" / "r1.png").read_bytes() != lost
    assert (out / "orphans" / "r1.png").read_bytes() == lost  # paid for: kept
    assert verify(out).problems == []


async def test_a_crashed_runs_image_of_an_edited_row_is_kept_aside_not_overwritten(
    tmp_path: Path,
) -> None:
    """Its record names another request (the prompt was edited after the crash): it is not
    the row's image, but it was paid for, so the row's new image does not take its place."""
    earlier = await earlier_run(tmp_path, 1, rows=3)
    out, old = earlier.out, png((20, 10))
    (out / "images" / "r1.png").write_bytes(old)
    digest = hashlib.sha256(old).hexdigest()
    files = (("images/r1.png", digest),)
    keep_record(out, "r1", provenance.Provenance("r1", "an older request", files))
    (out / "ledger.journal").write_bytes(b"")  # the unclean-shutdown mark

    await run(run_config(write_csv(earlier.manifest, earlier.rows), out), earlier.app)

    assert ledger(out)["r1"]["reason"] != "ADOPTED"
    assert (out / "orphans" / "r1.png").read_bytes() == old
    assert (out / "images" / "r1.png").read_bytes() != old


async def test_a_numbered_image_another_row_has_a_record_for_stays_that_rows(
    tmp_path: Path,
) -> None:
    """Row ``a`` may claim ``a_2.png`` by name (its second image would be called so), but a
    record says row ``a_2`` made it: it is neither taken for ``a`` nor set aside, and ``a_2``
    adopts it."""
    rows = [{"id": "b", "prompt": "pb"}, {"id": "a", "prompt": "pa"}, {"id": "a_2", "prompt": "p2"}]
    manifest = write_csv(tmp_path / "m.csv", rows[:1])
    out, app = tmp_path / "out", emulator()
    await run(run_config(manifest, out), app)  # b: this folder keeps records
    image = png((20, 10))
    (out / "images" / "a_2.png").write_bytes(image)  # a_2's, recorded, its ledger line lost
    files = (("images/a_2.png", hashlib.sha256(image).hexdigest()),)
    job = Job("a_2", 3, "p2", (), DEFAULT_MODEL, None, None)
    made = request_fingerprint(job, SourceCache())
    keep_record(out, "a_2", provenance.Provenance("a_2", made, files, cost_usd=0.039))
    (out / "ledger.journal").write_bytes(b"")  # the unclean-shutdown mark
    app.reset_stats()

    await run(run_config(write_csv(manifest, rows), out), app)

    rows_now = ledger(out)
    assert rows_now["a_2"]["reason"] == "ADOPTED"
    assert rows_now["a"]["reason"] != "ADOPTED"
    assert app.stats_snapshot()["requests"] == 1  # a only
    assert not (out / "orphans").exists()


def test_setting_aside_never_replaces_a_file_set_aside_before(tmp_path: Path) -> None:
    """Two crashes that each leave an image of the same name: both are kept."""
    (tmp_path / "images").mkdir()
    for content in (b"first", b"second"):
        (tmp_path / "images" / "r1.png").write_bytes(content)
        set_aside(tmp_path, {"r1": ["images/r1.png"]})
    kept = sorted(p.read_bytes() for p in (tmp_path / "orphans").iterdir())
    assert kept == [b"first", b"second"]


def flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


async def test_a_damaged_ledger_stops_the_run_before_anything_is_sent(tmp_path: Path) -> None:
    rows, _, out, app = await earlier_run(tmp_path, 4)
    flip_middle_byte(out / "ledger.parquet")
    app.reset_stats()

    with pytest.raises(LedgerDamaged, match="move it away"):
        await run(run_config(write_csv(tmp_path / "m.csv", rows), out), app)
    assert app.stats_snapshot()["requests"] == 0


async def test_after_a_damaged_ledger_is_moved_away_images_are_adopted_unless_the_row_changed(
    tmp_path: Path,
) -> None:
    rows = [{"id": f"r{i}", "prompt": f"p{i}"} for i in range(5)]
    out = tmp_path / "out"
    app = emulator()
    await run(run_config(write_csv(tmp_path / "m.csv", rows), out), app)
    before = ledger(out)
    (out / "ledger.parquet").rename(tmp_path / "ledger.parquet.damaged")  # what the message says
    rows[2]["prompt"] = "an edited prompt"  # its old image is not the new request's
    app.reset_stats()

    await run(run_config(write_csv(tmp_path / "m.csv", rows), out), app)

    assert app.stats_snapshot()["requests"] == 1
    after = ledger(out)
    assert {r["row_id"] for r in after.values() if r["reason"] == "ADOPTED"} == {
        "r0",
        "r1",
        "r3",
        "r4",
    }
    assert all(after[i]["sha256"] == before[i]["sha256"] for i in ("r0", "r1", "r3", "r4"))
    assert after["r2"]["prompt"] == "an edited prompt"
    assert after["r2"]["sha256"] != before["r2"]["sha256"]
    assert verify(out).problems == []


async def test_rerun_succeeded_sends_again_instead_of_adopting_its_own_images(
    tmp_path: Path,
) -> None:
    _, manifest, out, app = await earlier_run(tmp_path, 3, rows=3)
    app.reset_stats()
    await run(run_config(manifest, out, rerun=frozenset({Status.SUCCEEDED, Status.FAILED})), app)
    assert app.stats_snapshot()["requests"] == 3
    assert {r["reason"] for r in ledger(out).values()} == {"STOP"}


async def test_a_ledger_damaged_during_a_run_keeps_the_runs_records_and_costs_nothing_later(
    tmp_path: Path,
) -> None:
    rows, _, out, app = await earlier_run(tmp_path, 4)

    async def rot(result: RunResult) -> None:  # the disk flips a bit while the run is going
        flip_middle_byte(out / "ledger.parquet")

    app.reset_stats()
    with pytest.raises(LedgerNotFolded) as stopped:
        await run_manifest(
            run_config(write_csv(tmp_path / "m.csv", rows), out), EmulatorTransport(app), [rot]
        )
    assert stopped.value.exit_code != 2  # requests were sent: exit 2 would say none were
    assert app.stats_snapshot()["requests"] == 2
    assert {r["row_id"] for r in journal_records(out / "ledger.journal")} == {"r4", "r5"}

    (out / "ledger.parquet").rename(tmp_path / "ledger.parquet.damaged")
    app.reset_stats()
    await run(run_config(write_csv(tmp_path / "m.csv", rows), out), app)
    assert app.stats_snapshot()["requests"] == 0
    assert {r["status"] for r in ledger(out).values()} == {"succeeded"}
    assert len(ledger(out)) == 6
    assert verify(out).problems == []


async def run_and_die(config: RunConfig, app: EmulatorApp) -> Ledger:
    """A run that records its rows in its journal and is then still going (the ledger open,
    the directory locked); close its lock fd and it was killed."""
    ledger = Ledger(config.out_dir)
    ledger.open()
    pool = ClientPool(EmulatorTransport(app), 4)
    async with pool:
        await Pipeline(config, pool, ledger).run()
    return ledger


async def test_verify_fix_never_hides_what_a_running_or_crashed_run_recorded(
    tmp_path: Path,
) -> None:
    rows, _, out, app = await earlier_run(tmp_path, 3, name="a.csv")
    whole = run_config(write_csv(tmp_path / "m.csv", rows), out)
    going = await run_and_die(whole, app)  # r3..r5 are in its journal only

    found = verify(out)
    assert (found.checked_rows, found.problems, found.unreferenced) == (6, [], [])
    with pytest.raises(OutDirLocked, match="verify --fix after it ends"):
        fix(out)

    os.close(going._lock_fd)  # type: ignore[arg-type]  # SIGKILL: the journal is all there is
    fixed = fix(out)
    assert (fixed.fixed, fixed.strays_moved) == (0, 0)
    assert not (out / "orphans").exists()
    app.reset_stats()
    await run(whole, app)
    assert app.stats_snapshot()["requests"] == 0
    assert len(ledger(out)) == 6
    assert verify(out).problems == []


def keep_record(out: Path, stem: str, record: provenance.Provenance) -> None:
    """A provenance record, as a run keeps one before storing the row's images."""
    journal = provenance.ProvenanceJournal(out)
    journal.add(stem, record)
    journal.close()


class Killed(BaseException):
    """The process died here (nothing after this point of its own code runs)."""


@pytest.mark.parametrize("older", [False, True], ids=["", "images-without-provenance"])
async def test_a_kill_at_any_moment_of_verify_fix_leaves_no_succeeded_row_without_its_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, older: bool
) -> None:
    rows = [{"id": f"r{i}", "prompt": f"p{i}"} for i in range(3)]
    base = tmp_path / "base"
    app = emulator()
    manifest = write_csv(tmp_path / "m.csv", rows)
    await run(run_config(manifest, base), app)
    broken = base / "images" / "r1.png"
    broken.write_bytes(broken.read_bytes()[:-20])  # damaged on disk: checksum differs
    if older:  # a folder from before provenance records: adopted by name after a crash
        shutil.rmtree(base / "provenance")
        (base / provenance.JOURNAL_FILE).unlink()
    real_replace, real_append = os.replace, Ledger.append
    for moment in range(40):  # each rename and each ledger append is a moment to die before
        out = tmp_path / f"killed-at-{moment}"
        shutil.copytree(base, out)
        steps = 0

        def step() -> None:
            nonlocal steps
            if steps >= moment:  # noqa: B023 (read at call time, on purpose)
                raise Killed
            steps += 1

        def replace(src: Any, dst: Any) -> None:
            step()
            real_replace(src, dst)

        def append(self: Ledger, *args: Any) -> None:
            step()
            real_append(self, *args)

        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr(Ledger, "append", append)
        try:
            fix(out)
            finished = True
        except Killed:
            finished = False
        finally:
            monkeypatch.undo()
        view = {row["row_id"]: row for row in read_ledger_view(out).table.to_pylist()}
        for row in view.values():
            if row["status"] == "succeeded":
                missing = [p for p in row["output_paths"] if not (out / p).exists()]
                assert missing == [], f"killed at step {moment}: {row['row_id']} lost {missing}"
        if view["r1"]["status"] == "failed":  # the next run sends r1 again: unless it adopts
            await run(run_config(manifest, out), app)
            assert ledger(out)["r1"]["reason"] != "ADOPTED"  # a broken image is never taken back
        if finished:
            break
    assert finished, moment


@pytest.mark.parametrize("mode", [RunMode.ONLINE, RunMode.BATCH])
async def test_images_whose_records_a_kill_lost_are_adopted_at_the_cost_they_were_billed(
    tmp_path: Path, clock: VirtualClock, mode: RunMode
) -> None:
    # A kill between storing an answer's images and making its record durable: no record,
    # the images and their provenance on disk (the ledger moved away leaves the same for every
    # row). The rerun adopts them, and the ledger's cost is still what the server billed.
    manifest = write_csv(tmp_path / "m.csv", [{"id": f"r{i}", "prompt": f"p{i}"}
                                              for i in range(4)])  # fmt: skip
    out = tmp_path / "out"
    app = emulator(clock=clock, batch_delay=parse_batch_delay("uniform:60-120"))
    config = run_config(manifest, out, mode=mode, clock=clock)
    await run(config, app)
    before = ledger(out)
    (out / "ledger.parquet").rename(tmp_path / "lost.parquet")

    await run(config, app)

    stats: dict[str, Any] = app.stats_snapshot()
    assert (stats["billed"] + stats["batch_billed"], stats["billed_duplicates"]) == (4, 0)
    after = ledger(out)
    assert {r["reason"] for r in after.values()} == {"ADOPTED"}
    for row_id, row in after.items():
        was = before[row_id]
        assert (row["cost_usd"], row["tier"], row["batch_job"]) == (
            was["cost_usd"], was["tier"], was["batch_job"]
        )  # fmt: skip
    assert sum(r["cost_usd"] for r in after.values()) == pytest.approx(stats["billed_usd"])
