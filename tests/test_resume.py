"""Rerun selection: fingerprints, --rerun, --ids; and the ways a key can travel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipeline.core.clock import VirtualClock
from pipeline.core.config import ApiKey, AuthStyle
from pipeline.core.types import Status
from pipeline.emulator import (
    EmulatorApp,
    EmulatorTransport,
)
from pipeline.run.result import RunResult
from pipeline.run.scheduler import run_manifest
from tests.helpers import emulator, make_image, run_config, write_csv


async def run(app: EmulatorApp, manifest: Path, out: Path, **kw: Any) -> RunResult:
    return await run_manifest(run_config(manifest, out, **kw), EmulatorTransport(app))


def requests(app: EmulatorApp) -> int:
    value = app.stats_snapshot()["requests"]
    assert isinstance(value, int)
    return value


def ledger(out: Path) -> dict[str, dict[str, Any]]:
    return {r["row_id"]: r for r in pq.read_table(out / "ledger.parquet").to_pylist()}


async def test_editing_a_prompt_or_replacing_a_photo_regenerates_only_that_row(
    tmp_path: Path,
) -> None:
    make_image(tmp_path / "ref.png", (40, 40))
    rows = [
        {"id": "a", "prompt": "a red mug", "images": ""},
        {"id": "b", "prompt": "a blue mug", "images": "ref.png"},
        {"id": "c", "prompt": "a green mug", "images": ""},
    ]
    out = tmp_path / "out"
    app = emulator()
    await run(app, write_csv(tmp_path / "m.csv", rows), out)
    first = ledger(out)
    app.reset_stats()

    rows[0]["prompt"] = "a red mug, top view"
    make_image(tmp_path / "ref.png", (40, 30))  # the reference photo was replaced
    result = await run(app, write_csv(tmp_path / "m.csv", rows), out)

    assert requests(app) == 2
    assert result.changed == 2
    assert result.skipped == 1
    after = ledger(out)
    assert after["c"] == first["c"]
    assert after["a"]["fingerprint"] != first["a"]["fingerprint"]
    assert after["b"]["fingerprint"] != first["b"]["fingerprint"]


@pytest.mark.parametrize(
    ("rerun", "expected"),
    [
        (frozenset({Status.FAILED}), {"bad"}),
        (frozenset({Status.REFUSED}), {"nope"}),
        (frozenset({Status.FAILED, Status.REFUSED}), {"bad", "nope"}),
        (frozenset({Status.SUCCEEDED, Status.FAILED, Status.REFUSED}), {"ok", "bad", "nope"}),
        (frozenset(), set()),
    ],
    ids=["failed", "refused", "failed+refused", "all", "none"],
)
async def test_rerun_selects_which_finished_rows_are_sent_again(
    tmp_path: Path, rerun: frozenset[Status], expected: set[str], clock: VirtualClock
) -> None:
    rows = [{"id": "ok", "prompt": "fine"}, {"id": "nope", "prompt": "nope #unsafe"},
            {"id": "bad", "prompt": "x"}]  # fmt: skip
    manifest = write_csv(tmp_path / "m.csv", rows)
    out = tmp_path / "out"
    await run(emulator(), manifest, out, ids_file=_ids(tmp_path, "ok", "nope"), clock=clock)
    broken = emulator("500=1.0", clock)
    await run(broken, manifest, out, ids_file=_ids(tmp_path, "bad"), clock=clock)  # backs off
    before = ledger(out)
    assert {k: r["status"] for k, r in before.items()} == {
        "ok": "succeeded",
        "nope": "refused",
        "bad": "failed",
    }

    await clock.sleep(60)  # a later run: what it sends finishes at a later time
    counting = emulator()
    await run(counting, manifest, out, rerun=rerun, clock=clock)

    after = ledger(out)
    sent = {k for k in after if after[k]["finished_at"] != before[k]["finished_at"]}
    assert sent == expected
    assert requests(counting) == len(expected)


def _ids(tmp_path: Path, *ids: str) -> Path:
    path = tmp_path / f"ids-{'-'.join(ids)}.txt"
    path.write_text("# ids\n" + "\n".join(ids) + "\n")
    return path


async def test_ids_file_restricts_the_run(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "m.csv", [{"id": f"r{i}", "prompt": f"p{i}"} for i in range(6)])
    app = emulator()
    await run(app, manifest, tmp_path / "out", ids_file=_ids(tmp_path, "r1", "r4", "zz"))
    assert sorted(ledger(tmp_path / "out")) == ["r1", "r4"]
    assert requests(app) == 2


@pytest.mark.parametrize("auth", list(AuthStyle))
async def test_every_auth_style_reaches_the_server_with_the_key(
    tmp_path: Path, auth: AuthStyle
) -> None:
    manifest = write_csv(tmp_path / "m.csv", [{"id": "a", "prompt": "p"}])
    app = emulator(api_key="secret-key-1")
    result = await run(app, manifest, tmp_path / "out", auth=auth,
                       api_key=ApiKey("secret-key-1", "test"))  # fmt: skip
    assert result.stopped is None
    assert ledger(tmp_path / "out")["a"]["status"] == "succeeded"


async def test_a_replaced_photo_is_caught_even_when_the_manifest_is_unchanged(
    tmp_path: Path,
) -> None:
    make_image(tmp_path / "ref.png", (40, 40))
    rows = [{"id": "a", "prompt": "mug", "images": "ref.png"}, {"id": "b", "prompt": "cup"}]
    manifest = write_csv(tmp_path / "m.csv", rows)
    out = tmp_path / "out"
    app = emulator()
    await run(app, manifest, out)
    assert (out / "plan.state.json").exists()  # a whole-manifest run: the next may trust it
    app.reset_stats()
    await run(app, manifest, out)
    assert requests(app) == 0

    make_image(tmp_path / "ref.png", (30, 40))
    result = await run(app, manifest, out)

    assert requests(app) == 1
    assert result.changed == 1


async def test_rows_regenerated_for_an_edit_are_not_trusted_after_a_revert(
    tmp_path: Path,
) -> None:
    original = [{"id": "a", "prompt": "a red mug"}, {"id": "b", "prompt": "a cup"}]
    manifest = write_csv(tmp_path / "m.csv", original)
    out = tmp_path / "out"
    app = emulator()
    await run(app, manifest, out)
    write_csv(tmp_path / "m.csv", [{"id": "a", "prompt": "a blue mug"}, original[1]])
    await run(app, manifest, out, limit=1)  # regenerates a for the edit; plans only part
    write_csv(tmp_path / "m.csv", original)  # back to the original prompt
    app.reset_stats()

    await run(app, manifest, out)

    assert requests(app) == 1  # a's image is the blue one: it must be made again
    assert ledger(out)["a"]["prompt"] == "a red mug"
