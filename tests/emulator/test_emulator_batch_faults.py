"""Batch jobs that fail the ways real ones do: stuck, expired, failed, late or long-named output
files, error lines, and what a cancel bills. Seeded and deterministic."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.emulator import parse_batch_delay, parse_batch_faults
from tests.emulator.batch_helpers import AUTH, create, download_lines, get, jsonl, state, upload
from tests.emulator.emulator_helpers import FakeClock, config, emulator


def faulty(spec: str, clock: FakeClock, seconds: float = 100, **overrides: Any) -> Any:
    return config(
        clock=clock,
        batch_delay=parse_batch_delay(str(seconds)),
        batch_faults=parse_batch_faults(spec),
        **overrides,
    )


async def test_a_stuck_job_stays_pending_until_cancelled() -> None:
    clock = FakeClock()
    async with emulator(faulty("stuck=1", clock)) as (client, app):
        job = (await create(client, ["a cat", "a dog"])).json()
        clock.advance(10 * 86400)
        assert state(await get(client, job["name"])) == "BATCH_STATE_PENDING"
        answer = await client.post(f"/v1beta/{job['name']}:cancel", headers=AUTH)
        assert answer.status_code == 200
        cancelled = await get(client, job["name"])
    assert state(cancelled) == "BATCH_STATE_CANCELLED"
    assert cancelled["done"] is True
    assert cancelled["error"]["code"] == 1
    assert "output" not in cancelled["metadata"]
    assert app.stats_snapshot()["batch_billed"] == 0


async def test_an_expired_job_ends_without_results_or_bills() -> None:
    clock = FakeClock()
    async with emulator(faulty("expire=1", clock)) as (client, app):
        job = (await create(client, ["a cat"])).json()
        clock.advance(99)
        assert state(await get(client, job["name"])) == "BATCH_STATE_PENDING"
        clock.advance(1)
        expired = await get(client, job["name"])
    assert state(expired) == "BATCH_STATE_EXPIRED"
    assert "response" not in expired
    assert app.stats_snapshot()["batch_billed"] == 0


async def test_a_failed_job_runs_without_progress_then_fails() -> None:
    clock = FakeClock()
    async with emulator(faulty("fail=1", clock)) as (client, app):
        job = (await create(client, ["a cat", "a dog"])).json()
        clock.advance(50)
        running = await get(client, job["name"])
        assert state(running) == "BATCH_STATE_RUNNING"
        assert running["metadata"]["batchStats"]["pendingRequestCount"] == "2"
        clock.advance(50)
        failed = await get(client, job["name"])
    assert state(failed) == "BATCH_STATE_FAILED"
    assert failed["error"]["code"] == 13
    assert app.stats_snapshot()["batch_billed"] == 0


async def test_a_late_file_is_unreadable_for_a_while_after_success() -> None:
    clock = FakeClock()
    spec = faulty("late_file=1,late_file_s=30", clock, time_scale=0.5)
    async with emulator(spec) as (client, _):
        source = await upload(client, jsonl(["a cat"], image_size="512"))
        job = (await create(client, source["name"])).json()
        clock.advance(50)  # the job ends at 50 (100 s x 0.5), its file at 65
        done = await get(client, job["name"])
        assert state(done) == "BATCH_STATE_SUCCEEDED"
        output = done["response"]["responsesFile"]
        assert (await client.get(f"/v1beta/{output}", headers=AUTH)).status_code == 404
        download = await client.get(f"/v1beta/{output}:download?alt=media", headers=AUTH)
        assert download.status_code == 404
        clock.advance(15)
        assert (await client.get(f"/v1beta/{output}", headers=AUTH)).status_code == 200
        assert len(await download_lines(client, output)) == 1


async def test_a_long_output_id_is_refused_by_the_files_api_but_downloads_by_url() -> None:
    clock = FakeClock()
    async with emulator(faulty("long_id=1", clock, 0)) as (client, _):
        source = await upload(client, jsonl(["a cat"], image_size="512"))
        job = (await create(client, source["name"])).json()
        output = job["response"]["responsesFile"]
        assert len(output.removeprefix("files/")) > 40
        refused = await client.get(f"/v1beta/{output}", headers=AUTH)
        assert refused.status_code == 400
        assert "cannot be more than 40 characters" in refused.json()["error"]["message"]
        sdk_path = await client.get(f"/v1beta/{output}:download?alt=media", headers=AUTH)
        assert sdk_path.status_code == 400
        listed = (await client.get("/v1beta/files", headers=AUTH)).json()["files"]
        download_uri = next(f["downloadUri"] for f in listed if f["name"] == output)
        by_url = await client.get(download_uri, headers=AUTH)
        assert by_url.status_code == 200
        assert b'"key":"row-0"' in by_url.content


async def test_line_errors_fail_requests_without_billing() -> None:
    clock = FakeClock()
    async with emulator(faulty("line_error=1", clock, 0)) as (client, app):
        source = await upload(client, jsonl(["a cat", "a dog"]))
        job = (await create(client, source["name"])).json()
        assert job["metadata"]["batchStats"]["failedRequestCount"] == "2"
        lines = await download_lines(client, job["response"]["responsesFile"])
    assert [line["error"]["code"] for line in lines] == [13, 13]
    stats = app.stats_snapshot()
    assert stats["batch_billed"] == 0
    assert stats["faults"] == {"line_error": 2}


@pytest.mark.parametrize(("bills", "billed"), [(True, 2), (False, 0)])
async def test_a_cancel_bills_what_was_done_only_if_configured(bills: bool, billed: int) -> None:
    clock = FakeClock()
    prompts = [f"cat {i}" for i in range(4)]
    async with emulator(faulty("", clock, batch_cancel_bills=bills)) as (client, app):
        source = await upload(client, jsonl(prompts, image_size="512"))
        job = (await create(client, source["name"])).json()
        clock.advance(60)  # running from 10 to 100: two of four requests done
        await client.post(f"/v1beta/{job['name']}:cancel", headers=AUTH)
        clock.advance(100)
        cancelled = await get(client, job["name"])
        assert state(cancelled) == "BATCH_STATE_CANCELLED"
        assert cancelled["metadata"]["batchStats"]["successfulRequestCount"] == "2"
        if bills:
            lines = await download_lines(client, cancelled["response"]["responsesFile"])
            assert len(lines) == 2
        else:
            assert "response" not in cancelled
    assert app.stats_snapshot()["batch_billed"] == billed


async def test_fates_delays_and_orders_are_seeded() -> None:
    async def run(seed: int) -> list[tuple[str, str, str]]:
        clock = FakeClock()
        spec = config(
            clock=clock,
            seed=seed,
            batch_delay=parse_batch_delay("uniform:1-9"),
            batch_faults=parse_batch_faults("stuck=0.3,fail=0.3"),
        )
        seen = []
        async with emulator(spec) as (client, _):
            names = [(await create(client, [f"cat {i}"])).json()["name"] for i in range(8)]
            for second in range(10):
                clock.advance(1)
                for name in names:
                    job = await get(client, name)
                    seen.append((str(second), name[-4:], state(job)))
        return seen

    first, again, other = await run(7), await run(7), await run(8)
    assert first == again
    assert first != other
    assert {s for _, _, s in first} >= {"BATCH_STATE_PENDING", "BATCH_STATE_FAILED"}
