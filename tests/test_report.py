"""nanobatch report: the summary's figures, thumbnails, and the contact sheet in a browser."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.commands.report import build_report, format_report
from pipeline.commands.thumbs import THUMB_PX
from pipeline.core.clock import VirtualClock
from pipeline.core.errors import UsageError
from pipeline.emulator import EmulatorConfig, EmulatorTransport, Payload, create_app
from pipeline.run.scheduler import run_manifest
from pipeline.store.journal import encode_line
from pipeline.store.ledger import ATTEMPTS_SCHEMA, SCHEMA
from tests.browser import Browser
from tests.helpers import run_config, write_csv

HOSTILE = "a mug </script><b>bold</b> <!-- x __TILES__ & more"
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def ledger_row(row_id: str, line: int, status: str, reason: str, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(SCHEMA.names)
    row.update(row_id=row_id, line=line, status=status, reason=reason, prompt=f"prompt {row_id}")
    row.update(model="gemini-3.1-flash-image-preview", finished_at=T0, output_paths=[])
    row.update(values)
    return row


def write_ledger(out: Path, rows: list[dict[str, Any]]) -> None:
    (out / "images").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), out / "ledger.parquet")


def image(out: Path, name: str, size: tuple[int, int], mode: str = "RGB") -> str:
    colour: Any = (30, 90, 200) if mode == "RGB" else (30, 90, 200, 0)
    Image.new(mode, size, colour).save(out / "images" / name)
    return f"images/{name}"


def hand_made(out: Path) -> None:
    """A ledger of every status, written directly, with real images and no cost recorded."""
    (out / "images").mkdir(parents=True)
    write_ledger(
        out,
        [
            ledger_row("wide", 1, "succeeded", "STOP", latency_ms=9000.0, image_size="2K",
                       output_paths=[image(out, "wide.png", (1200, 600))]),
            ledger_row("see-through", 2, "succeeded", "STOP", latency_ms=1000.0,
                       model="nano-banana-pro",
                       output_paths=[image(out, "see-through.png", (300, 400), "RGBA")]),
            ledger_row("two", 3, "succeeded", "STOP", model="gemini-3-pro-image", image_size="4K",
                       output_paths=[image(out, "two_1.jpg", (512, 512)),
                                     image(out, "two_2.jpg", (512, 512))]),
            ledger_row("hostile #1 50%", 4, "succeeded", "STOP", prompt=HOSTILE,  # a URL escapes
                       output_paths=[image(out, "hostile #1 50%.png", (64, 64))]),
            ledger_row("gone", 5, "succeeded", "STOP", output_paths=["images/gone.png"]),
            ledger_row("unsafe", 6, "refused", "IMAGE_SAFETY", latency_ms=500.0,
                       error="The image was filtered out: IMAGE_SAFETY"),
            ledger_row("words", 7, "refused", "TEXT_ONLY", text="I cannot draw that <i>lamp</i>"),
            ledger_row("busy", 8, "failed", "SERVER_ERROR_503", error="The model is overloaded"),
            ledger_row("bad", 9, "invalid", "INVALID_IMAGES", error="images/x.png does not exist"),
        ],
    )  # fmt: skip


def embedded_tiles(page: str) -> list[dict[str, Any]]:
    match = re.search(r'<script id="tiles" type="application/json">(.*?)</script>', page, re.S)
    assert match is not None
    tiles: list[dict[str, Any]] = json.loads(match.group(1))
    return tiles


def test_a_directory_without_a_ledger_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"no ledger\.parquet"):
        build_report(tmp_path)
    (tmp_path / "ledger.parquet").write_bytes(b"not parquet")
    with pytest.raises(UsageError, match="not a readable ledger"):
        build_report(tmp_path)


def test_figures_count_statuses_reasons_and_estimate_spend_from_the_price_table(
    tmp_path: Path,
) -> None:
    hand_made(tmp_path)

    report = build_report(tmp_path)

    assert report.rows == 9
    assert dict(report.by_status) == {"succeeded": 5, "refused": 2, "failed": 1, "invalid": 1}
    assert report.by_reason[("refused", "IMAGE_SAFETY")] == 1
    assert report.by_reason[("failed", "SERVER_ERROR_503")] == 1
    # 3.1 Flash 2K + Pro 1K (alias, no size) + Pro 4K x 2 images (GA name) + two 3.1 Flash 1K;
    # refusals, failures and invalid rows cost nothing at Google's prices.
    assert report.spend_usd == pytest.approx(0.101 + 0.134 + 2 * 0.24 + 2 * 0.067)
    assert report.estimated_rows == 8
    assert [s.row_id for s in report.slowest] == ["wide", "see-through", "unsafe"]
    assert report.refusal_texts == {
        "IMAGE_SAFETY": "The image was filtered out: IMAGE_SAFETY",
        "TEXT_ONLY": "I cannot draw that <i>lamp</i>",
    }
    text = format_report(report)
    for words in ("IMAGE_SAFETY", "TEXT_ONLY", "I cannot draw that", "SERVER_ERROR_503", "wide"):
        assert words in text
    assert "~$0.85" in text


def test_a_recorded_cost_wins_over_the_estimate(tmp_path: Path) -> None:
    write_ledger(
        tmp_path,
        [
            ledger_row("a", 1, "succeeded", "STOP", cost_usd=0.5),
            ledger_row("b", 2, "refused", "IMAGE_SAFETY", cost_usd=0.02),  # a gateway billed it
        ],
    )
    report = build_report(tmp_path)
    assert report.spend_usd == pytest.approx(0.52)
    assert report.estimated_rows == 0
    assert "$0.52 (recorded" in format_report(report)


def test_duration_leaves_out_the_gap_between_two_runs(tmp_path: Path) -> None:
    write_ledger(tmp_path, [ledger_row("a", 1, "succeeded", "STOP")])
    starts = [T0, T0 + timedelta(seconds=50), T0 + timedelta(hours=12)]  # a rerun next morning
    attempts = [
        dict.fromkeys(ATTEMPTS_SCHEMA.names)
        | {"row_id": "a", "attempt": 1, "started_at": s, "finished_at": s + timedelta(seconds=10)}
        for s in starts
    ]
    pq.write_table(
        pa.Table.from_pylist(attempts, schema=ATTEMPTS_SCHEMA), tmp_path / "attempts.parquet"
    )
    report = build_report(tmp_path)
    assert (report.requests, report.runs, report.duration_s) == (3, 2, 70.0)
    assert "over 2 runs" in format_report(report)


def test_a_killed_runs_attempts_in_the_journal_count_as_requests_and_time(tmp_path: Path) -> None:
    write_ledger(tmp_path, [ledger_row("a", 1, "succeeded", "STOP")])
    folded = dict.fromkeys(ATTEMPTS_SCHEMA.names) | {
        "row_id": "a", "attempt": 1, "started_at": T0, "finished_at": T0 + timedelta(seconds=10)
    }  # fmt: skip
    pq.write_table(
        pa.Table.from_pylist([folded], schema=ATTEMPTS_SCHEMA), tmp_path / "attempts.parquet"
    )
    later = [T0 + timedelta(seconds=20), T0 + timedelta(seconds=40)]
    journal = [
        folded | {"row_id": f"b{i}", "started_at": s, "finished_at": s + timedelta(seconds=5)}
        for i, s in enumerate(later)
    ]
    (tmp_path / "attempts.journal").write_bytes(b"".join(encode_line(r) for r in journal))
    report = build_report(tmp_path)
    assert (report.requests, report.runs, report.duration_s) == (3, 1, 45.0)


def test_the_page_is_self_contained_and_data_cannot_break_out(tmp_path: Path) -> None:
    hand_made(tmp_path)
    build_report(tmp_path)
    page = (tmp_path / "report.html").read_text()

    assert not re.search(r"(src|href|action)\s*=\s*[\"']?\s*(https?:)?//", page)
    assert not re.search(r"<link|@import|url\(", page)
    assert "</script><b>" not in page  # the hostile prompt is data, not markup
    assert "<i>lamp</i>" not in page  # neither is the model's text
    tiles = embedded_tiles(page)  # the data did not end early
    assert [t["id"] for t in tiles][:3] == ["wide", "see-through", "two"]  # manifest order
    assert next(t for t in tiles if t["id"] == "hostile #1 50%")["p"] == HOSTILE
    assert next(t for t in tiles if t["id"] == "words")["t"] == "I cannot draw that <i>lamp</i>"
    assert "missing" in next(t for t in tiles if t["id"] == "gone")["t"]


def test_thumbnails_are_small_jpegs_made_once(tmp_path: Path) -> None:
    hand_made(tmp_path)
    report = build_report(tmp_path)

    tiles = {t["id"]: t for t in embedded_tiles((tmp_path / "report.html").read_text())}
    assert report.thumbnails == 4
    assert tiles["gone"]["th"] is None
    assert tiles["unsafe"]["th"] is None
    for row_id, size in (("wide", (256, 128)), ("see-through", (192, 256)), ("two", (256, 256))):
        with Image.open(tmp_path / tiles[row_id]["th"]) as thumb:
            assert (thumb.format, thumb.size) == ("JPEG", size)
            assert max(thumb.size) <= THUMB_PX
    with Image.open(tmp_path / tiles["see-through"]["th"]) as thumb:
        assert thumb.getpixel((5, 5)) == (255, 255, 255)  # transparency on white, not black
    made = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "thumbs").iterdir()}

    build_report(tmp_path)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "thumbs").iterdir()} == made

    newer = made["wide.jpg"] + 5_000_000_000
    os.utime(tmp_path / "images" / "wide.png", ns=(newer, newer))  # the image was remade
    build_report(tmp_path)
    assert (tmp_path / "thumbs" / "wide.jpg").stat().st_mtime_ns > made["wide.jpg"]


async def test_a_real_run_reports_what_the_emulator_did(
    tmp_path: Path, clock: VirtualClock
) -> None:
    rows: list[dict[str, Any]] = [{"id": f"r{i}", "prompt": f"a lamp {i}"} for i in range(8)]
    rows += [
        {"id": "blocked", "prompt": "y #block"},
        {"id": "text", "prompt": "z #noimage"},
    ]
    out = tmp_path / "out"
    app = create_app(EmulatorConfig(payload=Payload.COMPACT, clock=clock.monotonic))
    config = run_config(write_csv(tmp_path / "m.csv", rows), out, clock=clock)
    await run_manifest(config, EmulatorTransport(app))

    report = build_report(out)

    assert (report.rows, report.by_status["succeeded"], report.by_status["refused"]) == (10, 8, 2)
    assert report.spend_usd == pytest.approx(8 * 0.067)
    assert report.estimated_rows == 0  # the run recorded every row's cost
    assert report.requests >= 10  # TEXT_ONLY is retried once
    assert report.duration_s is not None
    assert report.thumbnails == 8
    assert "PROMPT_BLOCKED" in format_report(report)


# The contact sheet in a real browser.


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """One browser for the module's pages (a start costs more than a page)."""
    with Browser(tmp_path_factory.mktemp("profile")) as started:
        yield started


def dom(browser: Browser, page: Path, fragment: str) -> str:
    """The page's DOM after its script ran and its images loaded or failed."""
    return browser.dom(f"file://{page}{fragment}")


def tiles_in(html: str, attribute: str = "") -> int:
    return len(re.findall(rf'<article class="tile[^"]*"[^>]*{attribute}', html))


def many_rows(out: Path, rows: int) -> None:
    """A big ledger without images (the tiles show their reason instead): 9 in 10 refused."""
    write_ledger(
        out,
        [
            ledger_row(f"row-{i:05d}", i, "failed", "SERVER_ERROR_503")
            if i % 10 == 0
            else ledger_row(f"row-{i:05d}", i, "refused", "IMAGE_SAFETY")
            for i in range(rows)
        ],
    )


def test_the_contact_sheet_renders_filters_and_pages_in_a_browser(
    tmp_path: Path, browser: Browser
) -> None:
    small = tmp_path / "small"
    hand_made(small)
    build_report(small)
    page = (small / "report.html").resolve()

    everything = dom(browser, page, "")
    assert tiles_in(everything) == 9
    assert tiles_in(everything, 'data-img="loaded"') == 4  # every thumbnail decoded, "#1 50%" too
    sources = re.findall(r'<img[^>]* src="([^"]+)"', everything)
    assert len(sources) == 4
    assert all((small / unquote(src)).is_file() for src in sources)
    links = re.findall(r'<a href="(images/[^"]+)"', everything)
    assert len(links) == 6  # one per picture, and one per image of the row that made two
    assert all((small / unquote(link)).is_file() for link in links)
    assert "a mug &lt;/script&gt;&lt;b&gt;bold" in everything  # shown as text, not markup
    assert tiles_in(dom(browser, page, "#status=refused")) == 2
    assert tiles_in(dom(browser, page, "#status=failed,invalid")) == 2
    assert tiles_in(dom(browser, page, "#reason=TEXT_ONLY")) == 1
    assert tiles_in(dom(browser, page, "#q=HOSTILE")) == 1  # any case

    big = tmp_path / "big"
    many_rows(big, 10_000)
    build_report(big)
    page = (big / "report.html").resolve()
    first = dom(browser, page, "")
    assert tiles_in(first) == 200  # one page of tiles, not 10,000
    assert "page 1 of 50" in first
    last = dom(browser, page, "#status=refused&page=45")  # 9,000 refused rows
    assert tiles_in(last) == 200
    assert tiles_in(last, 'data-status="failed"') == 0
    assert "page 45 of 45" in last


def test_tiles_show_file_names_metadata_what_a_rerun_does_and_invalid_prompts(
    tmp_path: Path, browser: Browser
) -> None:
    rows = [
        {"id": "lamp", "sku": "SKU-0042", "title": "Desk lamp", "prompt": "a desk lamp"},
        {"id": "busy", "sku": "SKU-0043", "title": "Stool", "prompt": "a stool #500"},
        {"id": "bad", "sku": "SKU-0044", "title": "Vase", "prompt": "a tall blue vase",
         "images": "gone.png"},
    ]  # fmt: skip
    out = tmp_path / "out"
    clock = VirtualClock()  # busy backs off four times before it fails: no real waiting
    app = create_app(EmulatorConfig(payload=Payload.COMPACT, clock=clock.monotonic))
    config = run_config(write_csv(tmp_path / "m.csv", rows), out, name_template="{sku}",
                        clock=clock)  # fmt: skip
    clock.run(run_manifest, config, EmulatorTransport(app))
    build_report(out)
    page = dom(browser, (out / "report.html").resolve(), "")
    tile = r'<article class="tile[^"]*"[^>]*data-id="([^"]+)"[^>]*>(.*?)</article>'
    tiles = dict(re.findall(tile, page, re.S))
    assert set(tiles) == {"lamp", "busy", "bad"}
    assert ">SKU-0042.png<" in tiles["lamp"]  # the output file's name, as text
    assert "sku: SKU-0042" in tiles["lamp"]
    assert "title: Desk lamp" in tiles["lamp"]
    assert "a rerun retries this row" in tiles["busy"]
    assert "a tall blue vase" in tiles["bad"]  # an invalid row still shows its prompt
    assert "sku: SKU-0044" in tiles["bad"]
