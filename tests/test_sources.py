"""Source images as catalogues have them: special files, files outside the manifest's folder,
comma-separated lists, ``~``, corrupt or truncated photos; and prompts too long to send."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pillow_heif
import pytest
from PIL import Image

from pipeline.commands.validate import Validation, validate
from pipeline.core.config import RunConfig
from pipeline.core.prices import PriceTable
from pipeline.core.types import InvalidRow, Job
from pipeline.emulator import EmulatorConfig, EmulatorTransport, Payload, create_app
from pipeline.plan.rows import Defaults, RowResolver
from pipeline.plan.sources import SourceCache, SourceImageError
from pipeline.run.scheduler import run_manifest
from tests.helpers import make_image, run_config, write_csv

FLASH = "gemini-3.1-flash-image-preview"


def resolver(base: Path) -> RowResolver:
    return RowResolver(base, Defaults(FLASH, None, None))


def encoded(fmt: str, size: tuple[int, int] = (256, 192)) -> bytes:
    out = io.BytesIO()
    pillow_heif.register_heif_opener()
    Image.effect_noise(size, 60).convert("RGB").save(out, fmt)
    return out.getvalue()


def finishes(action: Callable[[], Any], release: Path | None = None) -> Any:
    """``action``'s result, or a failure if it does not finish in 5 s (then a writer is opened
    on the FIFO ``release`` so that the stuck reader of the old code can go)."""
    done: list[Any] = []

    def work() -> None:
        try:
            done.append(action())
        except Exception as e:  # handed to the test's thread
            done.append(e)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(5)
    if worker.is_alive() and release is not None:
        os.close(os.open(release, os.O_WRONLY | os.O_NONBLOCK))
    assert done, "hung on a special file"
    if isinstance(done[0], Exception):
        raise done[0]
    return done[0]


def test_a_fifo_is_an_invalid_row_and_is_never_opened_for_ever(tmp_path: Path) -> None:
    fifo = tmp_path / "photo.png"
    os.mkfifo(fifo)
    row = {"prompt": "p", "images": "photo.png"}
    result = finishes(lambda: resolver(tmp_path).resolve("r1", 2, row), release=fifo)
    assert isinstance(result, InvalidRow)
    assert result.field == "images"
    assert "FIFO" in result.reason
    cache = SourceCache()
    with pytest.raises(SourceImageError, match="FIFO"):
        finishes(lambda: cache.load(str(fifo)), release=fifo)
    assert finishes(lambda: cache.digest(str(fifo)), release=fifo) == "unreadable"


@pytest.mark.parametrize(("path", "kind"), [("/dev/zero", "a device"), (".", "a directory")])
def test_devices_and_directories_are_invalid_rows(tmp_path: Path, path: str, kind: str) -> None:
    result = finishes(lambda: resolver(tmp_path).resolve("r1", 2, {"prompt": "p", "images": path}))
    assert isinstance(result, InvalidRow)
    assert kind in result.reason


@pytest.mark.parametrize(
    ("damage", "fmt"),
    [
        (lambda d: d[: len(d) // 2], "PNG"),
        (lambda d: d[: len(d) // 2], "JPEG"),
        (lambda d: d[: len(d) // 2], "WEBP"),
        (lambda d: d[: len(d) // 2], "HEIF"),
        (lambda d: d[:40] + b"\0" * (len(d) - 40), "PNG"),
    ],
)
def test_a_corrupt_or_truncated_photo_is_an_invalid_row(
    tmp_path: Path, damage: Callable[[bytes], bytes], fmt: str
) -> None:
    (tmp_path / "good.img").write_bytes(encoded(fmt))
    (tmp_path / "bad.img").write_bytes(damage(encoded(fmt)))
    assert isinstance(
        resolver(tmp_path).resolve("a", 2, {"prompt": "p", "images": "good.img"}), Job
    )
    bad = resolver(tmp_path).resolve("b", 3, {"prompt": "p", "images": "bad.img"})
    assert isinstance(bad, InvalidRow)
    assert "does not decode" in bad.reason


async def test_a_truncated_photo_costs_no_request(tmp_path: Path) -> None:
    (tmp_path / "cut.jpg").write_bytes(encoded("JPEG")[:2000])
    make_image(tmp_path / "ok.png")
    rows = [{"id": "cut", "prompt": "p", "images": "cut.jpg"}, {"id": "ok", "prompt": "p"}]
    manifest = write_csv(tmp_path / "m.csv", rows)
    app = create_app(EmulatorConfig(payload=Payload.COMPACT))
    result = await run_manifest(run_config(manifest, tmp_path / "out"), EmulatorTransport(app))
    assert result.by_status == {"invalid": 1, "succeeded": 1}
    assert app.stats_snapshot()["requests"] == 1


def checked(tmp_path: Path, rows: list[dict[str, Any]], **config: Any) -> Validation:
    manifest = write_csv(tmp_path / "m.csv", rows)
    return validate(RunConfig(manifest, tmp_path / "out", **config), PriceTable())


def test_sources_outside_the_manifest_folder_are_said_once_each(tmp_path: Path) -> None:
    folder, shared = tmp_path / "catalogue", tmp_path / "shared"
    folder.mkdir()
    shared.mkdir()
    make_image(shared / "logo.png")
    make_image(folder / "inside.png")
    (folder / "link.png").symlink_to(shared / "logo.png")
    rows = [
        {"id": "a", "prompt": "p", "images": str(shared / "logo.png")},
        {"id": "b", "prompt": "p", "images": "../shared/logo.png"},
        {"id": "c", "prompt": "p", "images": "link.png"},
        {"id": "d", "prompt": "p", "images": "link.png; inside.png"},
        {"id": "e", "prompt": "p", "images": "inside.png"},
    ]
    found = checked(folder, rows)
    assert found.valid == 5
    said = {w.row_id: w.message for w in found.warnings if w.field == "images"}
    assert sorted(said) == ["a", "c"]  # a and b name the same file; d repeats c's link
    assert "absolute path" in said["a"]
    assert "symlink" in said["c"]
    parent = checked(folder, [{"id": "b", "prompt": "p", "images": "../shared/logo.png"}])
    assert "'..'" in parent.warnings[0].message


def test_a_comma_separated_cell_names_the_separator(tmp_path: Path) -> None:
    make_image(tmp_path / "a.png")
    make_image(tmp_path / "b.png")
    result = resolver(tmp_path).resolve("r1", 2, {"prompt": "p", "images": "a.png, b.png"})
    assert isinstance(result, InvalidRow)
    assert "';'" in result.reason


def test_a_tilde_is_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    make_image(tmp_path / "photo.png")
    result = resolver(tmp_path / "elsewhere").resolve(
        "r1", 2, {"prompt": "p", "images": "~/photo.png"}
    )
    assert isinstance(result, Job)
    assert result.images == (str(tmp_path / "photo.png"),)


@pytest.mark.parametrize(
    ("row", "defaults"),
    [
        ({"prompt": "x" * 300_000}, {}),  # over 65,536 tokens at ~4 characters per token
        ({"prompt": "x" * 140_000, "model": "gemini-2.5-flash-image"}, {}),
        ({"prompt": "p", "system_instruction": "y" * 270_000}, {}),
        ({"title": "z" * 50_000_000}, {"prompt_template": "Photo of {title}"}),
        ({"prompt": "x" * 5_000_000, "model": "gemini-9-image"}, {}),  # unknown: absurd only
    ],
)
def test_a_prompt_longer_than_the_model_takes_is_an_invalid_row(
    tmp_path: Path, row: dict[str, Any], defaults: dict[str, Any]
) -> None:
    result = RowResolver(tmp_path, Defaults(FLASH, None, None, **defaults)).resolve("r", 2, row)
    assert isinstance(result, InvalidRow)
    assert result.field == "prompt"
    assert "input tokens" in result.reason


def test_a_long_prompt_within_the_limit_passes(tmp_path: Path) -> None:
    assert isinstance(resolver(tmp_path).resolve("r", 2, {"prompt": "x" * 200_000}), Job)


def test_a_template_over_a_prompt_column_is_said_once(tmp_path: Path) -> None:
    rows = [{"id": str(i), "prompt": "ignored", "title": f"t{i}"} for i in range(3)]
    found = checked(tmp_path, rows, prompt_template="Photo of {title}")
    assert len([n for n in found.notes if "prompt column" in n]) == 1
    assert not [n for n in checked(tmp_path, rows).notes if "prompt column" in n]


def test_a_size_column_says_what_the_row_gets_and_what_would_cover_it(tmp_path: Path) -> None:
    rows = [
        {"id": "hd", "prompt": "p", "size": "1920x1080"},
        {"id": "big", "prompt": "p", "size": "1400x800"},
        {"id": "huge", "prompt": "p", "size": "9000x9000", "model": "gemini-3-pro-image-preview"},
        {"id": "exact", "prompt": "p", "size": "1024x1024"},
    ]
    found = checked(tmp_path, rows)
    said = {w.row_id: w.message for w in found.warnings if w.field == "size"}
    assert sorted(said) == ["big", "hd", "huge"]
    prices = PriceTable()
    one_k, two_k = prices.per_image(FLASH, "1K"), prices.per_image(FLASH, "2K")
    assert said["hd"] == (
        f"1920x1080 -> 1376x768 (16:9, 1K, ${one_k:.3f} per image), smaller than asked: "
        f"image_size 2K makes 2752x1536 (2K, ${two_k:.3f} per image)"
    )
    assert "2K" in said["big"]
    assert "no image size" in said["huge"]
