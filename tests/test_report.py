"""nanobatch report: the summary's figures, thumbnails, and the contact sheet in a browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.emulator import EmulatorConfig, EmulatorTransport, Payload, create_app
from pipeline.ledger import SCHEMA
from pipeline.report import THUMB_PX, build_report, format_report
from pipeline.scheduler import run_manifest
from tests.helpers import run_config, write_csv

HOSTILE = "a mug </script><b>bold</b> <!-- x"


async def run_demo(tmp_path: Path) -> Path:
    rows: list[dict[str, Any]] = [{"id": f"r{i}", "prompt": f"a lamp {i}"} for i in range(8)]
    rows += [
        {"id": "hostile", "prompt": HOSTILE},
        {"id": "unsafe", "prompt": "x #unsafe"},
        {"id": "blocked", "prompt": "y #block"},
        {"id": "text", "prompt": "z #noimage"},
    ]
    out = tmp_path / "out"
    app = create_app(EmulatorConfig(payload=Payload.COMPACT))
    await run_manifest(run_config(write_csv(tmp_path / "m.csv", rows), out), EmulatorTransport(app))
    return out


def embedded_tiles(page: str) -> list[dict[str, Any]]:
    match = re.search(r'<script id="tiles" type="application/json">(.*?)</script>', page, re.S)
    assert match is not None
    tiles: list[dict[str, Any]] = json.loads(match.group(1))
    return tiles


async def test_report_figures_thumbnails_and_a_self_contained_page(tmp_path: Path) -> None:
    out = await run_demo(tmp_path)

    report = build_report(out)

    assert (report.rows, report.by_status["succeeded"], report.by_status["refused"]) == (12, 9, 3)
    ledger = pq.read_table(out / "ledger.parquet").to_pylist()
    assert report.spend_usd == pytest.approx(sum(r["cost_usd"] for r in ledger))
    assert report.spend_usd == pytest.approx(9 * 0.067)
    assert set(report.refusal_texts) == {"IMAGE_SAFETY", "TEXT_ONLY"}
    text = format_report(report, out)
    assert "IMAGE_SAFETY" in text
    assert "PROMPT_BLOCKED" in text
    page = (out / "report.html").read_text()
    assert not re.search(r"(src|href)=[\"']?https?:", page)  # nothing fetched from anywhere
    assert "<link" not in page
    tiles = embedded_tiles(page)  # a prompt with </script> did not break out of the data
    assert {t["id"] for t in tiles} == {r["row_id"] for r in ledger}
    assert next(t for t in tiles if t["id"] == "hostile")["p"] == HOSTILE
    for tile in tiles:
        if tile["s"] == "succeeded":
            with Image.open(out / tile["th"]) as thumb:
                assert max(thumb.size) <= THUMB_PX
            assert (out / tile["im"][0]).exists()
        else:
            assert tile["th"] is None


async def test_thumbnails_are_reused_when_the_report_is_built_again(tmp_path: Path) -> None:
    out = await run_demo(tmp_path)
    build_report(out)
    first = {p.name: p.stat().st_mtime_ns for p in (out / "thumbs").iterdir()}
    build_report(out)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "thumbs").iterdir()} == first


def synthetic_ledger(out: Path, rows: int) -> None:
    """A big ledger without image files (the tiles show their reason instead)."""
    out.mkdir(parents=True)
    columns = {name: pa.nulls(rows, SCHEMA.field(name).type) for name in SCHEMA.names}
    columns.update(
        row_id=pa.array([f"row-{i:05d}" for i in range(rows)]),
        status=pa.array(["refused" if i % 10 else "failed" for i in range(rows)]),
        reason=pa.array(
            ["IMAGE_SAFETY" if i % 10 == 0 else "SERVER_ERROR_503" for i in range(rows)]
        ),
        prompt=pa.array([f"prompt {i}" for i in range(rows)]),
    )
    table = pa.table([columns[n] for n in SCHEMA.names], schema=SCHEMA)
    pq.write_table(table, out / "ledger.parquet")


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    pytest.skip("chromium is not installed (scripts/install_chromium.sh installs Debian's)")


def dom(browser: str, page: Path, fragment: str, profile: Path) -> str:
    result = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync",
         f"--user-data-dir={profile}", "--dump-dom", f"file://{page}{fragment}"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return result.stdout


def tile_count(html: str) -> int:
    return len(re.findall(r'<article class="tile"', html))


async def test_the_contact_sheet_renders_filters_and_pages_in_a_browser(tmp_path: Path) -> None:
    browser = chromium()
    out = await run_demo(tmp_path)
    build_report(out)
    page = (out / "report.html").resolve()
    profile = tmp_path / "profile"

    everything = dom(browser, page, "", profile)
    assert tile_count(everything) == 12
    for src in re.findall(r'<img[^>]* src="([^"]+)"', everything):
        assert (out / src).exists()
    assert tile_count(dom(browser, page, "#status=refused", profile)) == 3
    assert tile_count(dom(browser, page, "#reason=IMAGE_SAFETY", profile)) == 1
    assert tile_count(dom(browser, page, "#q=lamp%203", profile)) == 1

    big = tmp_path / "big"
    synthetic_ledger(big, 10_000)
    build_report(big)
    page = (big / "report.html").resolve()
    first = dom(browser, page, "", profile)
    assert tile_count(first) == 200  # one page of tiles, not 10,000
    assert "page 1 of 50" in first
    refused = dom(browser, page, "#status=refused&page=45", profile)  # 9,000 refused rows
    assert tile_count(refused) == 200
    assert "page 45 of 45" in refused
