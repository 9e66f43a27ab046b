"""The pipeline end to end against the in-process emulator: ledger rows, files, counters."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.core.clock import VirtualClock
from pipeline.core.config import ApiKey, RetryConfig
from pipeline.emulator import (
    EmulatorApp,
    EmulatorTransport,
    parse_latency,
)
from pipeline.providers.http import ClientPool
from pipeline.run.online.adaptive import AdaptiveLimit
from pipeline.run.scheduler import Pipeline
from pipeline.store.ledger import Ledger
from tests.helpers import emulator, make_image, run, run_config, write_csv, write_parquet

FAULTS = (
    "429=0.2,500=0.05,503=0.05,reset=0.02,truncate=0.02,block=0.02,unsafe=0.02,retry_delay=0.05"
)


def stats(app: EmulatorApp) -> dict[str, Any]:
    return dict(app.stats_snapshot())


def ledger(out: Path) -> dict[str, dict[str, Any]]:
    rows = pq.read_table(out / "ledger.parquet").to_pylist()
    return {row["row_id"]: row for row in rows}


def prompts(n: int) -> list[dict[str, Any]]:
    return [{"id": f"r{i:04d}", "prompt": f"a product photo number {i}"} for i in range(n)]


def assert_files_match(out: Path, rows: dict[str, dict[str, Any]]) -> None:
    for row in rows.values():
        if row["status"] != "succeeded":
            assert row["output_paths"] == []
            continue
        assert row["output_paths"], row
        for rel, digest in zip(row["output_paths"], row["sha256"], strict=True):
            data = (out / rel).read_bytes()
            assert hashlib.sha256(data).hexdigest() == digest


async def test_thousand_rows_under_faults_end_recorded_with_intact_files(
    tmp_path: Path, clock: VirtualClock
) -> None:
    manifest = write_csv(tmp_path / "m.csv", prompts(1000))
    app = emulator(FAULTS, clock, seed=11)
    config = run_config(manifest, tmp_path / "out", concurrency=32, image_size="512", clock=clock)

    result = await run(config, app)

    rows = ledger(tmp_path / "out")
    assert len(rows) == 1000
    statuses = {row["status"] for row in rows.values()}
    assert statuses <= {"succeeded", "refused", "failed"}
    assert_files_match(tmp_path / "out", rows)
    stats = app.stats_snapshot()
    assert stats["early_retries"] == 0
    assert stats["billed_duplicates"] == 0
    succeeded = sum(row["status"] == "succeeded" for row in rows.values())
    assert stats["billed"] == succeeded
    refused = [row for row in rows.values() if row["status"] == "refused"]
    assert refused, "the fault mix should refuse some rows"
    # Each refused row got exactly one refusal answer, as its last attempt: never resent.
    assert stats["refused"] == len(refused)
    attempts = pq.read_table(tmp_path / "out" / "attempts.parquet").to_pylist()
    assert len(attempts) == stats["requests"]
    for row in refused:
        history = sorted((a for a in attempts if a["row_id"] == row["row_id"]),
                         key=lambda a: a["attempt"])  # fmt: skip
        assert [a["outcome"] for a in history].count("refusal") == 1
        assert history[-1]["outcome"] == "refusal"
        assert len(history) == row["attempts"]
    assert result.requests == stats["requests"]
    # Every image is really there and decodes at the size the ledger says.
    some = next(row for row in rows.values() if row["status"] == "succeeded")
    with Image.open(tmp_path / "out" / some["output_paths"][0]) as im:
        assert im.size == (some["width"], some["height"])

    before = stats["requests"]
    again = await run(config, app)
    after = app.stats_snapshot()
    failed = [row for row in rows.values() if row["status"] == "failed"]
    assert again.skipped == 1000 - len(failed)
    assert after["billed_duplicates"] == 0  # no row that was paid for was sent again
    if not failed:
        assert after["requests"] == before


async def test_rerun_of_a_finished_run_sends_no_request(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "m.csv", [*prompts(30), {"id": "x", "prompt": "p #unsafe"}])
    app = emulator()
    config = run_config(manifest, tmp_path / "out")
    await run(config, app)
    first = ledger(tmp_path / "out")
    app.reset_stats()

    result = await run(config, app)

    assert app.stats_snapshot()["requests"] == 0
    assert result.skipped == 31
    assert ledger(tmp_path / "out") == first


async def test_refused_row_is_recorded_once_and_not_retried(tmp_path: Path) -> None:
    manifest = write_csv(
        tmp_path / "m.csv",
        [
            {"id": "unsafe", "prompt": "a scene #unsafe"},
            {"id": "blocked", "prompt": "a poster #block"},
        ],
    )
    app = emulator()
    await run(run_config(manifest, tmp_path / "out"), app)

    rows = ledger(tmp_path / "out")
    assert rows["unsafe"]["status"] == "refused"
    assert rows["unsafe"]["reason"] == "IMAGE_SAFETY"
    assert rows["blocked"]["status"] == "refused"
    assert rows["blocked"]["reason"].startswith("PROMPT_BLOCKED:")
    assert rows["unsafe"]["attempts"] == rows["blocked"]["attempts"] == 1
    assert app.stats_snapshot()["requests"] == 2


async def test_rate_limited_rows_wait_the_servers_delay(
    tmp_path: Path, clock: VirtualClock
) -> None:
    manifest = write_csv(tmp_path / "m.csv", prompts(60))
    app = emulator("429=0.5,retry_delay=0.2", clock, seed=3)
    await run(run_config(manifest, tmp_path / "out", concurrency=16, clock=clock), app)

    counters = stats(app)
    assert counters["by_status"].get("429", 0) > 0
    assert counters["early_retries"] == 0
    assert all(row["status"] == "succeeded" for row in ledger(tmp_path / "out").values())


async def test_csv_and_parquet_manifests_give_the_same_ledger(tmp_path: Path) -> None:
    photo = make_image(tmp_path / "photo.png", (80, 60))
    rows: list[dict[str, Any]] = [
        {"id": "a", "prompt": "a mug", "images": [], "aspect_ratio": "16:9", "image_size": ""},
        {
            "id": "b",
            "prompt": "edit it",
            "images": ["photo.png"],
            "aspect_ratio": "",
            "image_size": "",
        },
        {
            "id": "c",
            "prompt": "two refs",
            "images": ["photo.png", "photo.png"],
            "aspect_ratio": "1:1",
            "image_size": "512",
        },
        {"id": "d", "prompt": "bad size", "images": [], "aspect_ratio": "", "image_size": "1k"},
    ]
    assert photo.exists()
    app = emulator()
    await run(run_config(write_csv(tmp_path / "m.csv", rows), tmp_path / "csv"), app)
    await run(run_config(write_parquet(tmp_path / "m.parquet", rows), tmp_path / "pq"), app)

    drop = {"finished_at", "latency_ms", "attempts"}
    from_csv = {
        k: {c: v for c, v in r.items() if c not in drop}
        for k, r in ledger(tmp_path / "csv").items()
    }
    from_pq = {
        k: {c: v for c, v in r.items() if c not in drop} for k, r in ledger(tmp_path / "pq").items()
    }
    assert from_csv == from_pq
    assert from_csv["d"]["status"] == "invalid"
    assert from_csv["a"]["width"] > from_csv["a"]["height"]  # 16:9
    # No aspect ratio and a 4:3 source photo: the output follows the photo.
    assert from_csv["b"]["width"] * 3 == pytest.approx(from_csv["b"]["height"] * 4, rel=0.05)


async def test_failed_rows_are_retried_by_the_next_run(tmp_path: Path, clock: VirtualClock) -> None:
    manifest = write_csv(tmp_path / "m.csv", prompts(10))
    retry = RetryConfig(max_attempts=2)
    broken = emulator("500=1.0", clock)
    result = await run(run_config(manifest, tmp_path / "out", retry=retry, clock=clock), broken)
    assert result.by_status == {"failed": 10}
    rows = ledger(tmp_path / "out")
    assert {row["reason"] for row in rows.values()} == {"SERVER_ERROR_500"}
    assert all(row["attempts"] == 2 for row in rows.values())

    healthy = emulator(clock=clock)
    await run(run_config(manifest, tmp_path / "out", clock=clock), healthy)

    assert healthy.stats_snapshot()["requests"] == 10
    rows = ledger(tmp_path / "out")
    assert {row["status"] for row in rows.values()} == {"succeeded"}
    assert_files_match(tmp_path / "out", rows)


async def test_invalid_rows_cost_nothing_and_do_not_stop_valid_ones(tmp_path: Path) -> None:
    (tmp_path / "anim.gif").write_bytes(b"GIF89a" + b"\0" * 20)
    manifest = write_csv(
        tmp_path / "m.csv",
        [
            {"id": "ok", "prompt": "fine", "images": "", "aspect_ratio": ""},
            {"id": "empty", "prompt": "  ", "images": "", "aspect_ratio": ""},
            {"id": "ratio", "prompt": "x", "images": "", "aspect_ratio": "5:3"},
            {"id": "missing", "prompt": "x", "images": "nope.png", "aspect_ratio": ""},
            {"id": "gif", "prompt": "x", "images": "anim.gif", "aspect_ratio": ""},
        ],
    )
    app = emulator()
    await run(run_config(manifest, tmp_path / "out"), app)

    rows = ledger(tmp_path / "out")
    assert rows["ok"]["status"] == "succeeded"
    for row_id, reason in [
        ("empty", "INVALID_PROMPT"),
        ("ratio", "INVALID_ASPECT_RATIO"),
        ("missing", "INVALID_IMAGES"),
        ("gif", "INVALID_IMAGES"),
    ]:
        assert rows[row_id]["status"] == "invalid"
        assert rows[row_id]["reason"] == reason
        assert rows[row_id]["error"]
    assert app.stats_snapshot()["requests"] == 1


async def test_wrong_key_stops_the_run_within_concurrency_requests(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "m.csv", prompts(200))
    app = emulator(api_key="the-right-key")
    config = run_config(manifest, tmp_path / "out", concurrency=4)

    result = await run(config, app)

    assert result.stopped is not None
    assert result.stopped.reason == "API_KEY_INVALID"
    assert stats(app)["requests"] <= 4
    table = (
        pq.read_table(tmp_path / "out" / "ledger.parquet")
        if (tmp_path / "out" / "ledger.parquet").exists()
        else None
    )
    assert table is None or table.num_rows == 0

    right = run_config(manifest, tmp_path / "out", api_key=ApiKey("the-right-key", "test"))
    await run(right, app)
    assert len(ledger(tmp_path / "out")) == 200


async def test_thought_images_are_never_saved(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "m.csv", prompts(5))
    app = emulator()
    await run(run_config(manifest, tmp_path / "out", model="gemini-3-pro-image-preview"), app)

    rows = ledger(tmp_path / "out")
    assert all(len(row["output_paths"]) == 1 for row in rows.values())
    assert {row["mime_type"] for row in rows.values()} == {"image/jpeg"}
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == [
        f"r{i:04d}.jpg" for i in range(5)
    ]
    assert all(row["thoughts_tokens"] for row in rows.values())


async def test_limit_sends_only_the_first_rows(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "m.csv", prompts(20))
    app = emulator()
    await run(run_config(manifest, tmp_path / "out", limit=5), app)
    assert sorted(ledger(tmp_path / "out")) == [f"r{i:04d}" for i in range(5)]
    assert app.stats_snapshot()["requests"] == 5


async def test_a_hung_request_holds_its_own_slot_not_the_pool(
    tmp_path: Path, clock: VirtualClock
) -> None:
    # The first row hangs (until its 120 s timeout); the next ones answer 503 three times,
    # which used to halve the limit down to the one slot the hung request holds.
    rows = [{"id": "hung", "prompt": "a product photo #hangx1"}]
    rows += [{"id": f"busy{i}", "prompt": f"a busy photo {i} #503x3"} for i in range(8)]
    rows += prompts(30)
    manifest = write_csv(tmp_path / "m.csv", rows)
    config = run_config(manifest, tmp_path / "out", concurrency=8, clock=clock)

    await run(config, emulator(clock=clock))

    attempts = pq.read_table(tmp_path / "out" / "attempts.parquet").to_pylist()
    hung = next(a for a in attempts if a["row_id"] == "hung" and a["reason"] == "TIMEOUT")
    others = [a for a in attempts if a["row_id"] != "hung"]
    assert all(row["status"] == "succeeded" for row in ledger(tmp_path / "out").values())
    # Every other row was done while the hung request was still waiting for its answer.
    assert max(a["finished_at"] for a in others) < hung["finished_at"]


async def test_attempt_latency_counts_the_request_not_the_wait_for_a_slot(
    tmp_path: Path, clock: VirtualClock
) -> None:
    manifest = write_csv(tmp_path / "m.csv", prompts(4))
    app = emulator(clock=clock, latency=parse_latency("uniform:8-20"))
    config = run_config(manifest, tmp_path / "out", concurrency=4, clock=clock)
    ledger_ = Ledger(config.out_dir)
    ledger_.open()
    try:
        async with ClientPool(EmulatorTransport(app), config.concurrency) as pool:
            pipeline = Pipeline(config, pool, ledger_)
            pipeline.adaptive = AdaptiveLimit(1)  # four workers, one slot: rows queue for it
            await pipeline.run()
    finally:
        ledger_.close()

    attempts = sorted(
        pq.read_table(tmp_path / "out" / "attempts.parquet").to_pylist(),
        key=lambda a: a["started_at"],
    )
    assert len(attempts) == 4
    # One slot: each attempt starts after the previous one ended, and its latency is its own.
    for before, after in itertools.pairwise(attempts):
        assert after["started_at"] >= before["finished_at"]
    for a in attempts:
        span_ms = (a["finished_at"] - a["started_at"]).total_seconds() * 1000
        assert a["latency_ms"] <= span_ms + 5
