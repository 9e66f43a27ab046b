"""The chat gateway route end to end, in-process against the emulator's chat endpoint, under
the usual fault mix in both error conventions: every row terminal, no early retry, no billed
duplicate, the ledger's cost equal to what the emulator billed; each image shape; the link
shape fetched without the key; a gateway out of credit stops the run at once."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.core.clock import VirtualClock
from pipeline.core.config import ApiKey, RunConfig
from pipeline.core.routes import Route
from pipeline.core.types import Tier
from pipeline.emulator import (
    EmulatorApp,
    parse_latency,
)
from tests.helpers import TEST_KEY, emulator, make_image, run, run_config, write_csv

GATEWAY = "http://emulator.invalid/api/v1"
MODEL = "google/gemini-3.1-flash-image-preview"
# No reset or truncate here: an answer cut off midway may have been billed, so the client
# rightly charges it at its worst case while the emulator bills nothing (test_budget covers it).
# new-api's upstream_error drops Google's RetryInfo: the client then backs off by its own
# policy (3 s, doubling), which a 2 s delay does not outlast; OpenRouter's raw keeps it.
FAULTS = "429=0.2,500=0.05,503=0.05,block=0.03,unsafe=0.03,noimage=0.02,retry_delay=2"


def chat_config(manifest: Path, out: Path, **overrides: Any) -> RunConfig:
    """A run through the chat route, at the emulator's OpenRouter-style path."""
    values: dict[str, Any] = {"provider": Route.OPENAI_CHAT, "base_url": GATEWAY, "model": MODEL}
    return run_config(manifest, out, **{**values, **overrides})


def stats(app: EmulatorApp) -> dict[str, Any]:
    return dict(app.stats_snapshot())


def ledger(out: Path) -> dict[str, dict[str, Any]]:
    return {r["row_id"]: r for r in pq.read_table(out / "ledger.parquet").to_pylist()}


def manifest(tmp_path: Path, n: int) -> Path:
    photo = str(make_image(tmp_path / "ref.png", (120, 80)))
    rows = [{"id": f"r{i:03d}", "prompt": f"a product photo number {i}",
             "images": [photo] if i % 4 == 0 else []} for i in range(n)]  # fmt: skip
    return write_csv(tmp_path / "m.csv", rows)


@pytest.mark.parametrize("errors", ["raw", "upstream", "mixed"])
async def test_a_fault_mix_ends_terminal_with_the_ledger_cost_the_emulator_billed(
    tmp_path: Path, clock: VirtualClock, errors: str
) -> None:
    app = emulator(FAULTS, clock, seed=7, chat_errors=errors)
    out = tmp_path / "out"
    config = chat_config(manifest(tmp_path, 160), out, image_size="512", clock=clock)

    await run(config, app)

    rows = ledger(out)
    counters = stats(app)
    assert len(rows) == 160
    assert {r["status"] for r in rows.values()} <= {"succeeded", "refused", "failed"}
    assert counters["early_retries"] == 0
    assert counters["billed_duplicates"] == 0
    succeeded = [r for r in rows.values() if r["status"] == "succeeded"]
    assert counters["billed"] == len(succeeded)
    assert sum(r["cost_usd"] for r in rows.values()) == pytest.approx(counters["billed_usd"])
    refused = {r["reason"] for r in rows.values() if r["status"] == "refused"}
    assert {"IMAGE_SAFETY", "TEXT_ONLY"} <= refused
    assert any(reason.startswith("PROMPT_BLOCKED:") for reason in refused)
    # Each refusal answered once and never resent, but words instead of an image get one more try.
    refusals = sum(
        1 + (r["reason"] == "TEXT_ONLY") for r in rows.values() if r["status"] == "refused"
    )
    assert counters["refused"] == refusals
    for row in succeeded:
        (path,) = row["output_paths"]
        data = (out / path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"][0]
        with Image.open(out / path) as image:
            assert image.size == (row["width"], row["height"])


@pytest.mark.parametrize("shape", ["images", "parts", "markdown"])
async def test_each_shape_gives_the_final_image(tmp_path: Path, shape: str) -> None:
    app = emulator(chat_shape=shape)
    out = tmp_path / "out"
    config = chat_config(manifest(tmp_path, 6), out, aspect_ratio="16:9")

    await run(config, app)

    rows = ledger(out)
    assert {r["status"] for r in rows.values()} == {"succeeded"}
    # One image per row, the final one: drafts (parts, markdown) are smaller.
    assert {(r["width"], r["height"]) for r in rows.values()} == {(1376, 768)}
    assert all(len(r["output_paths"]) == 1 for r in rows.values())
    assert sum(r["cost_usd"] for r in rows.values()) == pytest.approx(
        app.stats_snapshot()["billed_usd"]
    )


async def test_hosted_links_are_fetched_without_the_key(tmp_path: Path) -> None:
    app = emulator(chat_shape="link")
    out = tmp_path / "out"
    config = chat_config(manifest(tmp_path, 8), out, follow_image_links=True)

    await run(config, app)

    rows = ledger(out)
    assert {r["status"] for r in rows.values()} == {"succeeded"}
    counters = stats(app)
    assert (counters["links_fetched"], counters["link_fetches_with_key"]) == (8, 0)
    assert counters["billed_duplicates"] == 0


async def test_hosted_links_without_follow_stop_the_run_after_a_few_requests(
    tmp_path: Path,
) -> None:
    app = emulator(chat_shape="link")
    config = chat_config(manifest(tmp_path, 200), tmp_path / "out", concurrency=4)

    result = await run(config, app)

    assert result.stopped is not None
    assert result.stopped.reason == "IMAGE_LINKS_NOT_FOLLOWED"
    assert stats(app)["requests"] <= config.concurrency


@pytest.mark.parametrize(
    ("prompt", "reason", "emulator_key"),
    [("p #402", "PAYMENT_REQUIRED", None), ("p", "UNAUTHENTICATED", "another-key")],
    ids=["out-of-credit", "wrong-key"],
)
async def test_a_gateway_that_refuses_the_account_stops_the_run(
    tmp_path: Path, prompt: str, reason: str, emulator_key: str | None
) -> None:
    app = emulator(api_key=emulator_key)
    rows = [{"id": f"r{i:03d}", "prompt": f"{prompt} {i}"} for i in range(300)]
    config = chat_config(write_csv(tmp_path / "m.csv", rows), tmp_path / "out", concurrency=8)

    result = await run(config, app)

    assert result.stopped is not None
    assert result.stopped.reason == reason
    assert stats(app)["requests"] <= config.concurrency
    assert stats(app)["billed"] == 0


async def test_only_the_gateway_key_is_sent_as_a_bearer_token(tmp_path: Path) -> None:
    app = emulator(api_key=TEST_KEY)  # any other bearer is a 401
    key = ApiKey(TEST_KEY, "NANOBATCH_GATEWAY_KEY")
    config = chat_config(manifest(tmp_path, 3), tmp_path / "out", api_key=key)

    await run(config, app)

    assert {r["status"] for r in ledger(tmp_path / "out").values()} == {"succeeded"}


@pytest.mark.parametrize("errors", ["raw", "upstream"])
async def test_a_flex_run_through_the_gateway_is_paid_once_at_the_flex_price(
    tmp_path: Path, clock: VirtualClock, errors: str
) -> None:
    app = emulator(FAULTS + ",shed=0.3", clock, seed=3, chat_errors=errors,
                   flex_latency=parse_latency("uniform:60-900"))  # fmt: skip
    out = tmp_path / "out"
    config = chat_config(manifest(tmp_path, 80), out, tier=Tier.FLEX, concurrency=64, clock=clock)

    await run(config, app)

    rows = ledger(out)
    counters = stats(app)
    assert len(rows) == 80
    assert {r["status"] for r in rows.values()} <= {"succeeded", "refused", "failed"}
    assert counters["by_tier"]["flex"]["shed"] > 0
    assert (counters["early_retries"], counters["billed_duplicates"]) == (0, 0)
    assert sum(r["cost_usd"] for r in rows.values()) == pytest.approx(counters["billed_usd"])
    succeeded = [r for r in rows.values() if r["status"] == "succeeded"]
    assert succeeded
    assert {(r["provider"], r["tier"], r["tier_reported"]) for r in succeeded} == {
        ("openai-chat", "flex", True)
    }
