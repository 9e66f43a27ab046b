"""Service tiers, piece by piece: the body field, what an answer at a tier means, the retry
policy for sheds and refused tiers, timeouts, the default concurrency, prices by (route,
model, size, tier), the tier column, and ledgers written before the tier columns."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.commands.validate import validate
from pipeline.core.budget import attempt_cost, worst_case
from pipeline.core.config import DEFAULT_TIMEOUTS_S, RetryConfig, RunConfig
from pipeline.core.errors import UsageError
from pipeline.core.options import parse_timeouts
from pipeline.core.prices import PriceTable
from pipeline.core.retry import Action, Budget, decide
from pipeline.core.tiers import (
    FLEX_TIMEOUT_S,
    default_concurrency,
    parse_fallback,
    parse_tier,
    request_timeout,
)
from pipeline.core.types import Job, Outcome, OutcomeKind, Status, Tier
from pipeline.plan.rows import Defaults, RowResolver
from pipeline.plan.sources import SourceCache
from pipeline.providers.gemini.classify import classify
from pipeline.providers.gemini.provider import GeminiProvider
from pipeline.store.ledger import LEDGER_FILE, SCHEMA
from pipeline.store.ledgerview import read_ledger_view
from tests.helpers import write_csv
from tests.test_classify import OVERLOADED, candidate, generation, image, response

FLASH = "gemini-3.1-flash-image-preview"
SHED_429 = {"error": {"code": 429, "message": "Resource exhausted. Please try again later.",
                      "status": "RESOURCE_EXHAUSTED"}}  # fmt: skip
SHED_503 = {"error": {"code": 503, "message": OVERLOADED, "status": "UNAVAILABLE"}}
QUOTA_429 = {"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED", "details": [
    {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
     "violations": [{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel"}]},
    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]}}  # fmt: skip
NO_FLEX = {"error": {"code": 400, "status": "INVALID_ARGUMENT",
                     "message": f"Flex API is not supported for model: {FLASH}."}}  # fmt: skip
BAD_FIELD = {"error": {"code": 400, "status": "INVALID_ARGUMENT",
                       "message": "Unable to process input image."}}  # fmt: skip


def job(tier: Tier = Tier.STANDARD, images: int = 0, model: str = FLASH) -> Job:
    paths = tuple(f"/x/{i}.png" for i in range(images))
    return Job("r", 1, "a lamp", paths, model, None, None, tier=tier)


@pytest.mark.parametrize(
    ("tier", "field"), [(Tier.STANDARD, None), (Tier.FLEX, "flex"), (Tier.PRIORITY, "priority")]
)
def test_the_body_names_a_tier_other_than_standard_and_the_fingerprint_ignores_it(
    tier: Tier, field: str | None
) -> None:
    request = GeminiProvider().prepare(job(tier), SourceCache())
    assert json.loads(request.body).get("serviceTier") == field
    assert request.tier is tier
    assert request.fingerprint == GeminiProvider().prepare(job(), SourceCache()).fingerprint


@pytest.mark.parametrize(
    ("status", "body", "tier", "kind", "reason"),
    [
        (503, SHED_503, Tier.FLEX, OutcomeKind.TRANSIENT, "SHED"),
        (429, SHED_429, Tier.FLEX, OutcomeKind.TRANSIENT, "SHED"),
        (429, QUOTA_429, Tier.FLEX, OutcomeKind.RATE_LIMIT, "RATE_LIMITED"),  # a quota: a limit
        (503, SHED_503, Tier.STANDARD, OutcomeKind.TRANSIENT, "SERVER_ERROR_503"),
        (503, SHED_503, Tier.PRIORITY, OutcomeKind.TRANSIENT, "SERVER_ERROR_503"),
        (400, NO_FLEX, Tier.FLEX, OutcomeKind.RUN_ERROR, "TIER_NOT_SUPPORTED"),
        (400, NO_FLEX, Tier.STANDARD, OutcomeKind.ROW_ERROR, "INVALID_REQUEST"),
        (400, BAD_FIELD, Tier.FLEX, OutcomeKind.ROW_ERROR, "INVALID_REQUEST"),  # about the row
    ],
)
def test_an_answer_reads_by_the_tier_it_was_asked_at(
    status: int, body: dict[str, Any], tier: Tier, kind: OutcomeKind, reason: str
) -> None:
    outcome = classify(response(status, body), tier=tier)
    assert (outcome.kind, outcome.reason) == (kind, reason)


@pytest.mark.parametrize(
    ("usage", "served"),
    [
        ({"serviceTier": "flex"}, Tier.FLEX),
        ({"serviceTier": "SERVICE_TIER_PRIORITY"}, Tier.PRIORITY),
        ({"trafficType": "ON_DEMAND_FLEX"}, Tier.FLEX),
        ({"trafficType": "ON_DEMAND"}, Tier.STANDARD),
        ({"trafficType": "PROVISIONED_THROUGHPUT"}, None),  # not a tier we price: not reported
        ({}, None),
    ],
)
def test_the_tier_that_served_an_answer_is_read_where_the_route_reports_it(
    usage: dict[str, str], served: Tier | None
) -> None:
    body = generation(candidate(image()))
    body["usageMetadata"].update(usage)
    assert classify(response(200, body), tier=Tier.FLEX).tier is served


SHED = Outcome(OutcomeKind.TRANSIENT, "SHED", 503)
REFUSED_TIER = Outcome(OutcomeKind.RUN_ERROR, "TIER_NOT_SUPPORTED", 400)


def test_sheds_back_off_on_their_own_allowance_then_fail_or_fall_back() -> None:
    rng = random.Random(0)
    for fallback, last in ((None, Action.FINISH), (Tier.STANDARD, Action.FALL_BACK)):
        config = RetryConfig(max_sheds=4, fallback=fallback)
        budget = Budget()
        decisions = [decide(SHED, budget, config, rng) for _ in range(4)]
        assert [d.action for d in decisions] == [Action.RETRY] * 3 + [last]
        assert [d.wait_s > 0 for d in decisions[:3]] == [True] * 3
        assert budget.transient == 0  # a shed is not a fault of the row
        assert not any(d.pause_pool for d in decisions)
    assert decisions[-1].status is None
    no_fallback = decide(SHED, Budget(sheds=3), RetryConfig(max_sheds=4), rng)
    assert no_fallback.status is Status.FAILED


def test_a_refused_tier_stops_the_run_unless_a_fallback_is_allowed() -> None:
    rng = random.Random(0)
    assert decide(REFUSED_TIER, Budget(), RetryConfig(), rng).action is Action.STOP_RUN
    fallback = RetryConfig(fallback=Tier.STANDARD)
    assert decide(REFUSED_TIER, Budget(), fallback, rng).action is Action.FALL_BACK


def test_flex_waits_long_enough_for_its_queue_and_keeps_a_longer_size_timeout() -> None:
    assert request_timeout(DEFAULT_TIMEOUTS_S, "1K", Tier.STANDARD) == 120
    assert request_timeout(DEFAULT_TIMEOUTS_S, "1K", Tier.FLEX) == FLEX_TIMEOUT_S >= 15 * 60
    assert request_timeout(DEFAULT_TIMEOUTS_S, "4K", Tier.PRIORITY) == 360
    given = parse_timeouts("flex=1800,4K=2400,priority=200")
    assert request_timeout(given, "1K", Tier.FLEX) == 1800
    assert request_timeout(given, "4K", Tier.FLEX) == 2400  # the longer of the two
    assert request_timeout(given, "1K", Tier.PRIORITY) == 200
    assert request_timeout({"1K": 5.0}, "1K", Tier.FLEX) == FLEX_TIMEOUT_S  # a caller's own
    with pytest.raises(UsageError, match="TIER=SECONDS"):
        parse_timeouts("batch=10")


def test_flex_raises_the_default_concurrency_and_tier_flags_name_their_choices() -> None:
    assert default_concurrency(Tier.STANDARD) == default_concurrency(Tier.PRIORITY) == 16
    assert default_concurrency(Tier.FLEX) == 128
    assert parse_tier("Flex") is Tier.FLEX
    with pytest.raises(UsageError, match="standard, flex, priority"):
        parse_tier("cheap")
    assert parse_fallback(None) is None
    assert parse_fallback("standard") is Tier.STANDARD
    with pytest.raises(UsageError, match="only fallback is standard"):
        parse_fallback("priority")


def test_prices_are_keyed_by_route_model_size_and_tier(tmp_path: Path) -> None:
    table = PriceTable()
    assert table.per_image(FLASH, "1K", tier=Tier.FLEX) == pytest.approx(0.0335)
    assert table.per_image(FLASH, "2K", tier=Tier.PRIORITY) == pytest.approx(0.101 * 1.8)
    assert table.per_image(FLASH, "1K", batch=True) == pytest.approx(0.0335)
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({
        "tiers": {"priority": 2.0}, "batch_discount": 0.4,
        "routes": {"openai-chat": {"images": {FLASH: {"1K": 0.08}}, "refusal_usd": 0.01}},
    }))  # fmt: skip
    loaded = PriceTable.load(path)
    assert loaded.per_image(FLASH, "1K", tier=Tier.PRIORITY) == pytest.approx(0.134)
    assert loaded.per_image(FLASH, "1K", batch=True) == pytest.approx(0.0268)
    assert loaded.per_image(FLASH, "1K", route="openai-chat") == pytest.approx(0.08)
    assert loaded.per_image(FLASH, "1K", tier="flex", route="openai-chat") == pytest.approx(0.04)
    # A route's table is laid over the file's own: priority is 2.0 there too.
    assert loaded.per_image(FLASH, "1K", tier="priority", route="openai-chat") == 0.16
    assert loaded.per_image(FLASH, "2K", route="openai-chat") == 0.101  # the rest stays
    assert (loaded.refusal("openai-chat"), loaded.refusal("vertex")) == (0.01, 0.0)


def test_a_table_remembers_prices_by_everything_they_depend_on(tmp_path: Path) -> None:
    """Asked over and over in any order, a table answers as a fresh one would; a table made
    from it (``replace``) remembers nothing of its prices."""
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({
        "tiers": {"priority": 2.0}, "input_image_usd": {FLASH: 0.002},
        "routes": {"openai-chat": {"images": {FLASH: {"1K": 0.08}}, "refusal_usd": 0.3}},
    }))  # fmt: skip
    asks = [
        (model, size, inputs, batch, tier, route)
        for model in (FLASH, "gemini-3-pro-image-preview", "models/unknown")
        for size in ("512", "1K", "4K")
        for inputs in (0, 3)
        for batch in (False, True)
        for tier in (Tier.STANDARD, Tier.FLEX, "priority")
        for route in (None, "openai-chat")
    ]
    remembering = PriceTable.load(path)
    answers: list[tuple[float, float, float]] = []
    for _ in range(2):
        random.Random(7).shuffle(asks)
        for model, size, inputs, batch, tier, route in asks:
            fresh = PriceTable.load(path)
            for table in (remembering, fresh):
                got = (
                    table.per_image(model, size, batch=batch, tier=tier, route=route),
                    table.input_cost(model, inputs, batch=batch, tier=tier, route=route),
                    table.worst_case(model, size, inputs, batch=batch, tier=tier, route=route),
                )
                answers.append(got)
            assert answers[-2] == answers[-1]
    cheaper = replace(remembering, tiers={"standard": 0.1})
    assert cheaper.per_image(FLASH, "1K") == pytest.approx(0.0067)
    assert remembering.per_image(FLASH, "1K") == pytest.approx(0.067)


def test_the_cap_reserves_standard_when_a_fallback_may_resend_and_settles_as_served() -> None:
    prices = PriceTable()
    pro = "gemini-3-pro-image-preview"
    flex = job(Tier.FLEX, images=2, model=pro)
    assert worst_case(flex, "1K", prices) == pytest.approx((0.134 + 0.0022) / 2)
    assert worst_case(flex, "1K", prices, fallback=Tier.STANDARD) == pytest.approx(0.1362)
    success = Outcome(OutcomeKind.SUCCESS, "STOP", 200, tier=Tier.FLEX)
    assert attempt_cost(success, flex, "1K", prices) == pytest.approx(0.0681)
    served_standard = Outcome(OutcomeKind.SUCCESS, "STOP", 200, tier=Tier.STANDARD)
    assert attempt_cost(served_standard, flex, "1K", prices) == pytest.approx(0.1362)
    unreported = Outcome(OutcomeKind.SUCCESS, "STOP", 200)  # priced at the tier asked for
    assert attempt_cost(unreported, job(Tier.PRIORITY), "1K", prices) == pytest.approx(0.1206)


def resolve(tmp_path: Path, row: dict[str, Any], tier: Tier = Tier.STANDARD) -> object:
    resolver = RowResolver(tmp_path, Defaults(FLASH, None, None, tier=tier))
    return resolver.resolve("r1", 2, {"prompt": "a lamp", **row})


def test_a_tier_column_overrides_the_run_tier_and_a_wrong_one_is_an_invalid_row(
    tmp_path: Path,
) -> None:
    assert getattr(resolve(tmp_path, {}, Tier.FLEX), "tier", None) is Tier.FLEX
    assert getattr(resolve(tmp_path, {"tier": "Priority"}, Tier.FLEX), "tier", None) is (
        Tier.PRIORITY
    )
    assert getattr(resolve(tmp_path, {"tier": ""}, Tier.FLEX), "tier", None) is Tier.FLEX
    bad = resolve(tmp_path, {"tier": "gold"})
    assert getattr(bad, "field", None) == "tier"
    assert "use standard, flex, priority" in getattr(bad, "reason", "")


def test_a_ledger_written_before_the_tier_columns_reads_them_as_nulls(tmp_path: Path) -> None:
    old = [f for f in SCHEMA if f.name not in ("provider", "tier", "tier_reported")]
    row = {"row_id": "a", "line": 2, "status": "succeeded", "reason": "STOP", "model": FLASH,
           "prompt": "a lamp", "cost_usd": 0.067}  # fmt: skip
    table = pa.Table.from_pylist([row], schema=pa.schema(old))
    pq.write_table(table.replace_schema_metadata({"nanobatch.ledger_version": "1"}),
                   tmp_path / LEDGER_FILE)  # fmt: skip

    view = read_ledger_view(tmp_path, ["row_id", "status", "provider", "tier", "tier_reported"])

    assert view.table.to_pylist() == [{"row_id": "a", "status": "succeeded", "provider": None,
                                       "tier": None, "tier_reported": None}]  # fmt: skip


def test_validate_prices_standard_flex_and_batch_side_by_side_and_the_tiers_asked(
    tmp_path: Path,
) -> None:
    rows = [{"id": f"a{i}", "prompt": "p", "tier": ""} for i in range(4)]
    rows += [{"id": "p", "prompt": "p", "tier": "priority", "image_size": "2K"}]
    manifest = write_csv(tmp_path / "m.csv", rows)
    config = RunConfig(manifest=manifest, out_dir=tmp_path, tier=Tier.FLEX)

    found = validate(config, PriceTable())

    assert found.standard_usd == pytest.approx(4 * 0.067 + 0.101)
    assert found.flex_usd == pytest.approx(found.standard_usd / 2)
    assert found.batch_usd == pytest.approx(found.standard_usd / 2)
    assert found.chosen_usd == pytest.approx(4 * 0.0335 + 0.101 * 1.8)
    assert found.tiers == {"flex": 4, "priority": 1}
    shown = CliRunner().invoke(app, ["validate", str(manifest), "--tier", "flex"]).output
    header = next(line for line in shown.splitlines() if line.split()[:1] == ["model"])
    assert header.split()[-3:] == ["standard", "flex", "batch"]
    assert "at the tiers asked (4 flex, 1 priority): $0.32" in shown
    entry = validate(config, PriceTable()).to_json(PriceTable())["cost"][0]
    assert (entry["standard_usd"], entry["flex_usd"], entry["batch_usd"]) == (0.268, 0.134, 0.134)


def test_run_refuses_an_unknown_tier_before_anything_is_made(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "m.csv", [{"id": "a", "prompt": "p"}])
    args = ["run", str(manifest), "--out", str(tmp_path / "o"), "--tier", "cheap"]
    result = CliRunner().invoke(app, args, env={"GEMINI_API_KEY": "k"})
    assert result.exit_code == 2
    assert "--tier 'cheap': use one of standard, flex, priority" in result.output
    assert not (tmp_path / "o" / "ledger.parquet").exists()
