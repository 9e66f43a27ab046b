"""Known columns as spreadsheets spell them: case, spaces, underscores, hyphens, camelCase and
the singular bind; a catalogue's own Size or Model stays metadata; near misses are noted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.core.models import DEFAULT_MODEL
from pipeline.core.types import Job
from pipeline.plan.manifest import inspect, read_batches
from pipeline.plan.rows import Defaults, RowResolver
from tests.helpers import make_image, write_csv


def rows(path: Path) -> list[dict[str, object]]:
    return [r for b in read_batches(path, 100) for r in b.table.to_pylist()]


@pytest.mark.parametrize(
    ("header", "value", "known"),
    [
        ("Images", "a.png", "images"),
        ("image", "a.png", "images"),
        ("IMAGES", "a.png", "images"),
        ("Aspect_Ratio", "16:9", "aspect_ratio"),
        ("aspect ratio", "16:9", "aspect_ratio"),
        ("Aspect-Ratio", "16:9", "aspect_ratio"),
        ("aspectRatio", "16:9", "aspect_ratio"),
        ("imageSize", "2K", "image_size"),
        ("Image Size", "2K", "image_size"),
        ("Model", "nano-banana-pro", "model"),
        ("Size", "1920x1080", "size"),
        ("System Instruction", "be brief", "system_instruction"),
        ("Output Name", "front", "output_name"),
        ("Seed", "7", "seed"),
    ],
)
def test_spellings_of_known_columns_bind(
    tmp_path: Path, header: str, value: str, known: str
) -> None:
    path = write_csv(tmp_path / "m.csv", [{"id": "r1", "Prompt": "a mug", header: value}])
    (row,) = rows(path)
    assert row["prompt"] == "a mug"
    assert row[known] == value


def test_a_bound_images_column_sends_the_photo_and_leaves_metadata(tmp_path: Path) -> None:
    make_image(tmp_path / "a.png")
    make_image(tmp_path / "b.png")
    path = write_csv(tmp_path / "m.csv", [
        {"Sku": "1", "Prompt": "p", "Images": "a.png; b.png", "Aspect Ratio": "4:5", "Title": "t"},
    ])  # fmt: skip
    (batch,) = read_batches(path, 100)
    resolver = RowResolver(tmp_path, Defaults(DEFAULT_MODEL, None, None))
    job = resolver.resolve(batch.ids[0].as_py(), 1, batch.table.to_pylist()[0])
    assert isinstance(job, Job)
    assert len(job.images) == 2
    assert job.aspect_ratio == "4:5"
    assert json.loads(job.metadata or "") == {"Sku": "1", "Title": "t"}


@pytest.mark.parametrize(
    ("header", "value", "known"),
    [("Size", "XL", "size"), ("Model", "AX-200", "model"), ("Image", "front view", "images"),
     ("Seed", "lavender", "seed")],
)  # fmt: skip
def test_a_variant_whose_values_do_not_parse_stays_metadata_with_a_note(
    tmp_path: Path, header: str, value: str, known: str
) -> None:
    path = write_csv(tmp_path / "m.csv", [{"id": "r1", "prompt": "p", header: value}])
    (row,) = rows(path)
    assert row[header] == value
    assert known not in row
    notes = " ".join(inspect(path).notes)
    assert f"{header!r}" in notes
    assert f"{known!r}" in notes


def test_the_exact_name_always_binds(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "m.csv", [{"id": "r1", "prompt": "p", "size": "XL"}])
    assert rows(path)[0]["size"] == "XL"  # the row is invalid later, with its reason


def test_a_near_miss_is_noted_and_a_second_spelling_does_not_replace_the_first(
    tmp_path: Path,
) -> None:
    path = write_csv(
        tmp_path / "m.csv", [{"id": "r1", "prompt": "p", "Promt": "q", "Images": "b.png"}]
    )
    path2 = write_csv(tmp_path / "n.csv", [{"id": "r1", "prompt": "p", "images": "a.png",
                                            "Images": "b.png"}])  # fmt: skip
    (row,) = rows(path)
    assert row["prompt"] == "p"
    assert row["Promt"] == "q"
    assert "'Promt' is close to 'prompt'" in " ".join(inspect(path).notes)
    (row2,) = rows(path2)
    assert (row2["images"], row2["Images"]) == ("a.png", "b.png")
    assert "'images' is used" in " ".join(inspect(path2).notes)
