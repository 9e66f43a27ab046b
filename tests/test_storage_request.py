"""Output files and request bodies."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.core.mime import extension
from pipeline.core.types import ImagePart, Job
from pipeline.plan.fingerprint import fingerprint
from pipeline.plan.sources import SourceCache, sniff_mime
from pipeline.providers.gemini.provider import GeminiProvider
from pipeline.store.storage import output_names, store_images
from tests.helpers import make_image


def png_bytes(size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size).save(buf, "PNG")
    return buf.getvalue()


def job(**kw: object) -> Job:
    values: dict[str, object] = {
        "row_id": "r", "line": 1, "prompt": "a mug", "images": (),
        "model": "gemini-3.1-flash-image-preview", "image_size": None, "aspect_ratio": None,
    }  # fmt: skip
    values.update(kw)
    return Job(**values)  # type: ignore[arg-type]


def test_one_image_is_named_by_id_and_several_are_numbered() -> None:
    png = ImagePart(b"", "image/png")
    jpg = ImagePart(b"", "image/jpeg")
    assert output_names("sku-1", (png,)) == ["images/sku-1.png"]
    assert output_names("sku-1", (png, jpg)) == ["images/sku-1_1.png", "images/sku-1_2.jpg"]


def test_a_hostile_mime_type_cannot_become_a_path() -> None:
    assert extension("image/../../etc") == "etc"
    assert extension("image/") == "bin"
    assert "/" not in extension("../../x/y")


def test_stored_images_are_complete_with_checksums_and_sizes(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    data = png_bytes((30, 20))
    (stored,) = store_images(tmp_path, "r1", (ImagePart(data, "image/png"),))
    assert (tmp_path / stored.rel_path).read_bytes() == data
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert (stored.width, stored.height) == (30, 20)
    assert [p.name for p in (tmp_path / "images").iterdir()] == ["r1.png"]


def test_undecodable_image_bytes_are_kept_not_lost(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (stored,) = store_images(tmp_path, "r1", (ImagePart(b"garbage", "image/png"),))
    assert (tmp_path / stored.rel_path).read_bytes() == b"garbage"
    assert stored.width is None


def test_request_puts_images_first_and_text_last(tmp_path: Path) -> None:
    photo = make_image(tmp_path / "p.jpg", fmt="JPEG")
    request = GeminiProvider().prepare(
        job(images=(str(photo),), aspect_ratio="4:5", image_size="2K"), SourceCache()
    )
    body = json.loads(request.body)
    parts = body["contents"][0]["parts"]
    assert parts[0]["inlineData"]["mimeType"] == "image/jpeg"
    assert base64.b64decode(parts[0]["inlineData"]["data"]) == photo.read_bytes()
    assert parts[-1] == {"text": "a mug"}
    assert body["generationConfig"]["imageConfig"] == {"aspectRatio": "4:5", "imageSize": "2K"}
    assert request.timeout_s == 180.0


def test_image_size_is_never_sent_to_a_model_without_sizes() -> None:
    request = GeminiProvider().prepare(
        job(model="gemini-2.5-flash-image", image_size="1K"), SourceCache()
    )
    assert "imageConfig" not in json.loads(request.body)["generationConfig"]


def test_fingerprint_changes_with_anything_that_shapes_the_image() -> None:
    base = fingerprint(job(), [])
    assert fingerprint(job(), []) == base
    assert fingerprint(job(prompt="a cup"), []) != base
    assert fingerprint(job(aspect_ratio="1:1"), []) != base
    assert fingerprint(job(model="gemini-3-pro-image-preview"), []) != base
    assert fingerprint(job(), ["abc"]) != base


def test_source_cache_reads_a_shared_photo_once_and_notices_replacement(tmp_path: Path) -> None:
    photo = make_image(tmp_path / "p.png", (10, 10))
    cache = SourceCache()
    first = cache.load(str(photo))
    assert cache.load(str(photo)) is first
    make_image(photo, (12, 10))
    assert cache.load(str(photo)).sha256 != first.sha256


def test_mime_is_sniffed_from_bytes() -> None:
    assert sniff_mime(png_bytes((1, 1))[:32]) == "image/png"
    assert sniff_mime(b"\x00\x00\x00\x18ftypheic" + b"\0" * 8) == "image/heic"
    assert sniff_mime(b"\x00\x00\x00\x18ftypmif1" + b"\0" * 8) == "image/heif"
    assert sniff_mime(b"GIF89a") is None


_TEXT = st.text(max_size=40)
_JOBS = st.builds(
    Job,
    row_id=st.just("r"),
    line=st.just(1),
    prompt=_TEXT,
    images=st.just(()),
    model=st.sampled_from(["gemini-3.1-flash-image-preview", "gemini-3-pro-image-preview"]),
    image_size=st.sampled_from([None, "1K", "2K"]),
    aspect_ratio=st.sampled_from([None, "1:1", "16:9"]),
    system_instruction=st.one_of(st.none(), _TEXT),
    temperature=st.one_of(st.none(), st.floats(0, 2, allow_nan=False)),
    seed=st.one_of(st.none(), st.integers(0, 2**31 - 1)),
)
_DIGESTS = st.lists(st.text("0123456789abcdef", min_size=4, max_size=8), max_size=3)


@settings(max_examples=150, deadline=None)
@given(job=_JOBS, digests=_DIGESTS, data=st.data())
def test_fingerprints_are_stable_and_change_with_any_input(
    job: Job, digests: list[str], data: st.DataObject
) -> None:
    same = replace(job)  # an equal job built separately
    assert fingerprint(same, list(digests)) == fingerprint(job, digests)
    other = data.draw(_JOBS)
    other_digests = data.draw(_DIGESTS)
    shaping = ("prompt", "model", "image_size", "aspect_ratio", "system_instruction",
               "temperature", "seed")  # fmt: skip
    differs = digests != other_digests or any(getattr(job, f) != getattr(other, f) for f in shaping)
    if differs:
        assert fingerprint(other, other_digests) != fingerprint(job, digests)
    # What does not shape the image (the row's id, its line, its file name) never matters.
    moved = replace(job, row_id="elsewhere", line=99, output_name="x")
    assert fingerprint(moved, digests) == fingerprint(job, digests)


def test_a_row_s_images_are_hashed_once_however_often_their_digest_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The provenance record and the stored image's description both name each image's
    SHA-256: one hash per image, the same digest in both, and none carried by ``replace``
    over to other bytes."""
    from pipeline.core import types
    from pipeline.store import provenance

    hashed: list[int] = []
    real = hashlib.sha256

    def counting(data: bytes = b"") -> Any:
        hashed.append(len(data))
        return real(data)

    monkeypatch.setattr(types, "hashlib", SimpleNamespace(sha256=counting))
    images = (
        ImagePart(png_bytes((40, 30)), "image/png"),
        ImagePart(png_bytes((30, 40)), "image/png"),
    )
    (tmp_path / "images").mkdir()  # as a run makes it
    journal = provenance.ProvenanceJournal(tmp_path)
    stored = provenance.store(
        tmp_path, "row", images, journal=journal, row_id="row", fingerprint="fp"
    )
    journal.close()
    assert len(hashed) == 2
    record = provenance.read(tmp_path, "row")
    assert record is not None
    assert [digest for _, digest in record.files] == [s.sha256 for s in stored]
    assert [s.sha256 for s in stored] == [real((tmp_path / s.rel_path).read_bytes()).hexdigest()
                                          for s in stored]  # fmt: skip
    other = replace(images[0], data=b"other bytes")
    assert other.sha256 == real(b"other bytes").hexdigest()
