"""A model id goes into the request's URL path: only ids of a strict pattern are sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.commands.validate import validate
from pipeline.core.config import RunConfig
from pipeline.core.errors import UsageError
from pipeline.core.models import check_model_id
from pipeline.core.prices import PriceTable
from pipeline.core.types import InvalidRow, Job
from pipeline.emulator import EmulatorConfig, EmulatorTransport, Payload, create_app
from pipeline.plan.rows import Defaults, RowResolver
from pipeline.run.scheduler import run_manifest
from tests.helpers import run_config, write_csv

FLASH = "gemini-3.1-flash-image-preview"
HOSTILE = [
    "../../_emulator/reset?",
    "gemini-3.1-flash-image-preview:generateContent?x=",
    "gemini\x07bell",
    "gemini image",
    "models/../x",
    "google/gemini-3.1-flash-image-preview",  # a gateway's body id: not for a URL path
    "%2e%2e",
]


@pytest.mark.parametrize("model", HOSTILE)
def test_a_model_id_outside_the_url_pattern_is_an_invalid_row(tmp_path: Path, model: str) -> None:
    defaults = Defaults(FLASH, None, None)
    result = RowResolver(tmp_path, defaults).resolve("r1", 2, {"prompt": "p", "model": model})
    assert isinstance(result, InvalidRow)
    assert result.field == "model"
    assert "\n" not in result.reason
    assert "\x07" not in result.reason


@pytest.mark.parametrize("model", ["gemini-2.5-flash-image", "nano-banana-2", "models/" + FLASH])
def test_ordinary_model_ids_and_aliases_pass(tmp_path: Path, model: str) -> None:
    defaults = Defaults(FLASH, None, None)
    result = RowResolver(tmp_path, defaults).resolve("r1", 2, {"prompt": "p", "model": model})
    assert isinstance(result, Job)


def test_gateway_ids_may_carry_a_vendor_prefix_only_where_they_travel_in_a_body() -> None:
    assert check_model_id("google/gemini-3.1-flash-image-preview", in_path=False) is None
    assert check_model_id("google/gemini-3.1-flash-image-preview") is not None
    assert check_model_id("../x?", in_path=False) is not None


async def test_a_hostile_model_column_sends_nothing_anywhere(tmp_path: Path) -> None:
    rows = [
        {"id": "bad", "prompt": "p", "model": "../../_emulator/reset?"},
        {"id": "bell", "prompt": "p", "model": "gemini\x07"},
        {"id": "good", "prompt": "p"},
    ]
    manifest = write_csv(tmp_path / "m.csv", rows)
    app = create_app(EmulatorConfig(payload=Payload.COMPACT))
    result = await run_manifest(run_config(manifest, tmp_path / "out"), EmulatorTransport(app))
    assert result.by_status == {"invalid": 2, "succeeded": 1}
    assert app.stats_snapshot()["requests"] == 1


def test_validate_counts_the_row_invalid_and_a_bad_model_flag_is_a_usage_error(
    tmp_path: Path,
) -> None:
    manifest = write_csv(tmp_path / "m.csv", [{"id": "x", "prompt": "p", "model": "a/../b"}])
    found = validate(RunConfig(manifest, tmp_path), PriceTable())
    assert (found.valid, found.invalid_count) == (0, 1)
    assert found.invalid[0].field == "model"
    flag = RunConfig(manifest, tmp_path, model="../../_emulator/reset?")
    with pytest.raises(UsageError, match="--model"):
        validate(flag, PriceTable())
