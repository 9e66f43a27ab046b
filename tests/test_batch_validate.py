"""``validate --mode batch``: a route without a Batch API is a problem said before anything is
sent, rows a batch request cannot take are listed with their reason, and the estimate's
headline is the batch price."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.commands import validate as validate_module
from pipeline.commands.validate import format_validation, validate
from pipeline.core.config import RunConfig, RunMode
from pipeline.core.prices import PriceTable
from pipeline.plan.rowimages import BATCH_LINK
from tests.helpers import make_image, write_csv


@pytest.fixture
def batchable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A build whose Gemini route takes batch jobs (the route and executor are others' work)."""
    monkeypatch.setattr(validate_module, "check_mode", lambda config: None)


def manifest(tmp_path: Path) -> Path:
    photo = make_image(tmp_path / "lamp.png")
    return write_csv(tmp_path / "m.csv", [
        {"id": "a", "prompt": "a lamp"},
        {"id": "b", "prompt": "a lamp", "images": str(photo)},
        {"id": "c", "prompt": "a lamp", "images": "https://example.com/lamp.png"},
        {"id": "d", "prompt": "a lamp", "image_size": "4K"},
    ])  # fmt: skip


def test_rows_with_a_link_cannot_go_into_a_batch_request(tmp_path: Path, batchable: None) -> None:
    config = RunConfig(manifest(tmp_path), tmp_path, mode=RunMode.BATCH)
    found = validate(config, PriceTable())
    assert (found.valid, found.invalid_count, found.problems) == (3, 1, [])
    (row,) = found.invalid
    assert (row.row_id, row.line, row.field) == ("c", 3, "images")
    assert row.reason.endswith(BATCH_LINK)
    online = validate(RunConfig(manifest(tmp_path), tmp_path), PriceTable())
    assert (online.valid, online.invalid_count) == (4, 0)  # online, the link is sent as such


def test_the_batch_price_is_the_headline(tmp_path: Path, batchable: None) -> None:
    rows = [{"id": f"r{i}", "prompt": "a lamp"} for i in range(10)]
    config = RunConfig(write_csv(tmp_path / "m.csv", rows), tmp_path, mode=RunMode.BATCH)
    prices = PriceTable()
    found = validate(config, prices)
    assert found.batch_usd == pytest.approx(found.standard_usd / 2)
    text = format_validation(found, prices, config.manifest).splitlines()
    first = next(line for line in text if line.startswith("estimated cost"))
    assert first.startswith(f"estimated cost with --mode batch: ${found.batch_usd:,.2f}")
    report = found.to_json(prices)
    assert report["mode"] == "batch"
    assert report["estimated_usd"] == pytest.approx(found.batch_usd, abs=1e-4)
    online = validate(RunConfig(config.manifest, tmp_path), prices).to_json(prices)
    assert online["estimated_usd"] == pytest.approx(online["standard_usd"])


@pytest.mark.parametrize(
    ("flags", "names"),
    [
        (["--provider", "openai-chat"], "--provider openai-chat cannot take batch jobs"),
        (["--provider", "vertex", "--project", "p"], "--provider vertex cannot take batch jobs"),
    ],
)
def test_a_route_without_batch_is_a_problem_before_anything_is_sent(
    tmp_path: Path, flags: list[str], names: str
) -> None:
    rows = [{"id": "a", "prompt": "a lamp"}]
    args = ["validate", str(write_csv(tmp_path / "m.csv", rows)), "--mode", "batch", *flags]
    result = CliRunner().invoke(app, [*args, "--format", "json"], env={})
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert any(names in problem for problem in report["problems"])
    assert report["valid"] == 1  # the rows are still checked and priced
