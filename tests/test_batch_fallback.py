"""The online fallback of batch mode, driven directly against the in-process emulator on the
virtual clock: rows handed to ``send_online`` are each recorded once, at the tier the route
can serve, paid once; the spending cap wins over the deadline; and the deadline arithmetic."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from pipeline.core.clock import VirtualClock
from pipeline.core.config import RunConfig
from pipeline.core.models import DEFAULT_MODEL
from pipeline.core.types import Job, Tier
from pipeline.emulator import EmulatorApp, EmulatorConfig, EmulatorTransport, Payload, create_app
from pipeline.providers.base import Provider
from pipeline.providers.http import ClientPool
from pipeline.providers.registry import provider_for
from pipeline.run.batch.fallback import (
    OnlineSent,
    fallback_at,
    fallback_due,
    online_tier,
    seconds_to_fallback,
    send_online,
)
from pipeline.run.control import Halt
from pipeline.run.executor import Record, RunServices
from pipeline.store.ledger import LedgerRecord
from tests.helpers import run_config


def jobs(n: int, tier: Tier = Tier.STANDARD) -> list[Job]:
    return [
        Job(f"r{i:02d}", i + 2, f"a desk lamp, angle {i}", (), DEFAULT_MODEL, None, None, tier=tier)
        for i in range(n)
    ]


async def fall_back(
    config: RunConfig, app: EmulatorApp, rows: Sequence[Job], provider: Provider | None = None
) -> tuple[OnlineSent, list[Record], RunServices]:
    """``send_online`` as the batch executor calls it, the writer's stream read here."""
    (config.out_dir / "images").mkdir(parents=True, exist_ok=True)  # as the ledger makes it
    services = RunServices(config)
    services.inflight.open()
    got: list[Record] = []
    send, recv = anyio.create_memory_object_stream[Record](8)
    try:
        async with ClientPool(EmulatorTransport(app), 16) as pool, anyio.create_task_group() as tg:

            async def read() -> None:
                async with recv:
                    async for record in recv:
                        got.append(record)

            tg.start_soon(read)
            async with send:
                sent = await send_online(
                    services, pool, provider or provider_for(config), rows, send
                )
                await send.send(rows_done_marker())  # the caller's stream stays open
    finally:
        services.inflight.close()
    assert got.pop() == rows_done_marker()
    return sent, got, services


def rows_done_marker() -> LedgerRecord:
    return LedgerRecord("marker", 0, "succeeded", "", "", "", finished_at=datetime(2026, 1, 1))


def emulator(clock: VirtualClock) -> EmulatorApp:
    return create_app(EmulatorConfig(payload=Payload.COMPACT, seed=3, clock=clock.monotonic))


def rows_of(records: list[Record]) -> dict[str, LedgerRecord]:
    return {r.row_id: r for r in records if isinstance(r, LedgerRecord)}


async def test_every_row_goes_online_once_recorded_and_paid_as_billed(
    tmp_path: Path, clock: VirtualClock
) -> None:
    app = emulator(clock)
    config = run_config(tmp_path / "m.csv", tmp_path / "out", clock=clock)
    sent, records, services = await fall_back(config, app, jobs(12))

    recorded = rows_of(records)
    assert sorted(recorded) == [f"r{i:02d}" for i in range(12)]
    assert {r.status for r in recorded.values()} == {"succeeded"}
    assert {r.tier for r in recorded.values()} == {"standard"}
    for row in recorded.values():
        assert all((config.out_dir / p).is_file() for p in row.output_paths)
    stats: dict[str, Any] = dict(app.stats_snapshot())
    assert stats["billed_duplicates"] == 0
    assert stats["billed"] == 12
    assert sent.rows == services.result.fallback_rows == 12
    assert sent.by_status == {"succeeded": 12}
    assert sent.cost_usd == pytest.approx(stats["billed_usd"], abs=1e-6)
    assert services.result.fallback_usd == pytest.approx(sent.cost_usd)


async def test_rows_asking_flex_go_at_flex_where_the_route_serves_it(
    tmp_path: Path, clock: VirtualClock
) -> None:
    app = emulator(clock)
    config = run_config(tmp_path / "m.csv", tmp_path / "out", clock=clock, tier=Tier.FLEX)
    sent, records, _ = await fall_back(config, app, jobs(4, Tier.FLEX))
    assert {r.tier for r in rows_of(records).values()} == {"flex"}
    stats: dict[str, Any] = dict(app.stats_snapshot())
    assert set(stats["by_tier"]) == {"flex"}
    assert sent.rows == 4


def test_a_tier_the_route_lacks_goes_standard() -> None:
    class StandardOnly:
        class capabilities:  # stands in for the Capabilities value
            tiers = (Tier.STANDARD,)

    job = jobs(1, Tier.FLEX)[0]
    assert online_tier(job, StandardOnly()) is Tier.STANDARD  # type: ignore[arg-type]
    gemini = provider_for(RunConfig(Path("m.csv"), Path("o")))
    assert online_tier(job, gemini) is Tier.FLEX
    assert online_tier(jobs(1, Tier.PRIORITY)[0], gemini) is Tier.PRIORITY


async def test_the_spending_cap_wins_over_the_deadline(tmp_path: Path, clock: VirtualClock) -> None:
    app = emulator(clock)
    price = RunConfig(Path("m"), Path("o")).prices.worst_case(DEFAULT_MODEL, "1K", 0)
    config = run_config(tmp_path / "m.csv", tmp_path / "out", clock=clock, concurrency=1,
                        max_cost_usd=price * 3.5)  # fmt: skip
    sent, records, services = await fall_back(config, app, jobs(10))

    assert services.control.halt is Halt.COST_CAP
    assert len(rows_of(records)) == sent.rows == 3  # the rest stay pending, never sent
    assert dict(app.stats_snapshot())["requests"] == 3


async def test_nothing_to_send_sends_nothing(tmp_path: Path, clock: VirtualClock) -> None:
    app = emulator(clock)
    sent, records, _ = await fall_back(run_config(tmp_path / "m", tmp_path / "o"), app, [])
    assert (sent.rows, records) == (0, [])
    assert dict(app.stats_snapshot())["requests"] == 0


async def test_rows_fall_back_at_the_deadline_minus_the_margin(clock: VirtualClock) -> None:
    now = clock.now()
    config = RunConfig(Path("m"), Path("o"), clock=clock, deadline=now + timedelta(hours=3),
                       fallback_margin_s=7200)  # fmt: skip
    assert fallback_at(config) == now + timedelta(hours=1)
    assert seconds_to_fallback(config) == pytest.approx(3600)
    assert not fallback_due(config)
    await clock.sleep(3600)
    assert fallback_due(config)
    assert seconds_to_fallback(config) == 0.0
    without = RunConfig(Path("m"), Path("o"), clock=clock)
    assert fallback_at(without) is None
    assert seconds_to_fallback(without) == float("inf")
    assert not fallback_due(without, datetime(2999, 1, 1, tzinfo=UTC))
