"""The streaming answer reader (``gemini.stream``) reads every answer as the whole-body reader
does: the same outcome, the same image bytes, however the body is cut into chunks; its spooled
images are kept only when the outcome keeps them, and a run stores them exactly as before."""

from __future__ import annotations

import base64
import errno
import hashlib
import itertools
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import httpx
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.commands.verify import verify
from pipeline.core.types import ImagePart, Outcome, OutcomeKind, SpooledFile
from pipeline.emulator import EmulatorConfig, EmulatorTransport, Payload, create_app
from pipeline.providers.base import WholeBody
from pipeline.providers.gemini.classify import classify
from pipeline.providers.gemini.stream import SPOOL_AFTER, StreamingAnswer
from pipeline.run.scheduler import run_manifest
from pipeline.store import storage
from pipeline.store.storage import store_images
from tests.helpers import run_config, write_csv

HYPOTHESIS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def whole(body: bytes, status: int = 200) -> Outcome:
    reader = WholeBody(classify)
    reader.begin(status, {"content-type": "application/json"})
    reader.feed(body)
    return reader.finish()


def streamed(
    body: bytes, folder: Path, cuts: list[int] | None = None, status: int = 200, after: int = 8
) -> Outcome:
    reader = StreamingAnswer(lambda r, s: classify(r, spooled=s), folder, spool_after=after)
    reader.begin(status, {"content-type": "application/json"})
    edges = [0, *sorted({c % (len(body) + 1) for c in cuts or []}), len(body)]
    for start, end in itertools.pairwise(edges):
        reader.feed(body[start:end])
    return reader.finish()


def image_bytes(image: ImagePart) -> bytes:
    return Path(image.spooled.path).read_bytes() if image.spooled else image.data


def assert_same(expected: Outcome, got: Outcome, folder: Path) -> None:
    """The same outcome, image for image; the folder holds exactly the images kept."""
    assert replace(got, images=()) == replace(expected, images=())
    assert [(image_bytes(i), i.mime_type) for i in got.images] == [
        (i.data, i.mime_type) for i in expected.images
    ]
    for image in got.images:
        assert image.sha256 == hashlib.sha256(image_bytes(image)).hexdigest()
        assert image.size == len(image_bytes(image))
    kept = {i.spooled.path for i in got.images if i.spooled}
    assert {str(p) for p in folder.iterdir()} == kept if folder.exists() else not kept


def answer(parts: list[dict[str, Any]], **top: Any) -> dict[str, Any]:
    return {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 1290},
        **top,
    }


PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- real emulator answers ------------------------------------------------------------------


async def emulator_answer(size: str, model: str) -> bytes:
    app = create_app(EmulatorConfig(payload=Payload.REALISTIC))
    async with httpx.AsyncClient(transport=EmulatorTransport(app), base_url="http://e") as client:
        config: dict[str, Any] = {"responseModalities": ["TEXT", "IMAGE"]}
        if size != "1K":
            config["imageConfig"] = {"imageSize": size}
        request: dict[str, Any] = {"contents": [{"parts": [{"text": f"a lighthouse, {size}"}]}]}
        request["generationConfig"] = config
        response = await client.post(
            f"/v1beta/models/{model}:generateContent", json=request, headers={"x-goog-api-key": "k"}
        )
        return response.content


REAL: dict[str, bytes] = {}


def real(name: str) -> bytes:
    if not REAL:
        REAL["flash"] = anyio.run(emulator_answer, "1K", "gemini-2.5-flash-image")
        REAL["pro"] = anyio.run(emulator_answer, "1K", "gemini-3-pro-image")  # thought images
    return REAL[name]


@settings(HYPOTHESIS, max_examples=25)  # each example reads 1.4 MB twice
@given(
    name=st.sampled_from(["flash", "pro"]),
    cuts=st.lists(st.integers(min_value=0), max_size=40),
    after=st.sampled_from([0, 100, SPOOL_AFTER]),
)
def test_real_answers_read_alike_however_they_are_chunked(
    tmp_path_factory: pytest.TempPathFactory, name: str, cuts: list[int], after: int
) -> None:
    folder = tmp_path_factory.mktemp("spool")
    body = real(name)
    got = streamed(body, folder, cuts, after=after)
    assert got.kind is OutcomeKind.SUCCESS
    assert_same(whole(body), got, folder)


# --- tricky JSON --------------------------------------------------------------------------

texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=30) | st.sampled_from(
    ['"data":"QUJD"', '\\"data\\":\\"', "é\u2028😀", '{"data": "', "\\", '"']
)


@st.composite
def image_values(draw: st.DrawFn) -> str:
    raw = PNG + draw(st.binary(max_size=300))
    text = b64(raw)
    how = draw(
        st.sampled_from(["plain", "urlsafe", "unpadded", "wrapped", "broken", "padded", "empty"])
    )
    if how == "urlsafe":
        return base64.urlsafe_b64encode(raw).decode()
    if how == "unpadded":
        return text.rstrip("=")
    if how == "wrapped":
        return "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    if how == "padded":  # a padded group inside the value: not one value's base64
        cut = 4 * draw(st.integers(0, len(text) // 4))
        return text[:cut] + "QQ==" + text[cut:]
    if how == "broken":
        return text[: draw(st.integers(0, len(text)))] + draw(st.sampled_from(["*", "=A", "é"]))
    return "" if how == "empty" else text


@st.composite
def parts(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["image", "text", "thought-after", "thought-before", "audio"]))
    if kind == "text":
        return {"text": draw(texts)}
    inline = {
        "mimeType": "audio/wav" if kind == "audio" else "image/png",
        "data": draw(image_values()),
    }
    if draw(st.booleans()):
        inline = {"data": inline["data"], "mimeType": draw(st.sampled_from(["", "image/png"]))}
    part: dict[str, Any] = {"inlineData": inline}
    if kind == "thought-after":
        part["thought"] = True  # after its inlineData, as the API may send it
    if kind == "thought-before":
        part = {"thought": True, **part}
    return part


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    data = answer(draw(st.lists(parts(), max_size=4)))
    if draw(st.booleans()):
        data["candidates"][0]["finishReason"] = draw(st.sampled_from(["STOP", "IMAGE_SAFETY"]))
    text = json.dumps(
        data,
        ensure_ascii=draw(st.booleans()),
        separators=draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,", " : ")])),
    )
    if draw(st.booleans()):
        text = text.replace("/", "\\/")  # a legal escape some encoders write
    body = text.encode()
    if draw(st.integers(0, 5)) == 0:
        body = body[: draw(st.integers(0, len(body)))]  # truncated: broken JSON
    return body


@HYPOTHESIS
@given(body=bodies(), cuts=st.lists(st.integers(min_value=0), max_size=30))
def test_tricky_answers_read_alike_however_they_are_chunked(
    tmp_path_factory: pytest.TempPathFactory, body: bytes, cuts: list[int]
) -> None:
    folder = tmp_path_factory.mktemp("spool")
    assert_same(whole(body), streamed(body, folder, cuts), folder)


@HYPOTHESIS
@given(body=st.binary(max_size=200), status=st.sampled_from([200, 429, 500]))
def test_arbitrary_bytes_read_alike(
    tmp_path_factory: pytest.TempPathFactory, body: bytes, status: int
) -> None:
    folder = tmp_path_factory.mktemp("spool")
    assert_same(whole(body, status), streamed(body, folder, [3, 17], status), folder)


# --- spools: kept, removed, stored ----------------------------------------------------------


def test_a_thought_image_spooled_before_its_thought_flag_is_removed(tmp_path: Path) -> None:
    thought = {"inlineData": {"mimeType": "image/png", "data": b64(PNG * 3)}, "thought": True}
    final = {"inlineData": {"mimeType": "image/png", "data": b64(PNG * 4)}}
    body = json.dumps(answer([thought, final])).encode()
    outcome = streamed(body, tmp_path, cuts=list(range(0, len(body), 7)))
    assert [image_bytes(i) for i in outcome.images] == [PNG * 4]
    assert [p.name for p in tmp_path.iterdir()] == [Path(outcome.images[0].spooled.path).name]  # type: ignore[union-attr]


def test_a_refusal_keeps_no_spooled_file(tmp_path: Path) -> None:
    part = {"inlineData": {"mimeType": "image/png", "data": b64(PNG * 3)}, "thought": True}
    body = json.dumps(answer([part, {"text": "I cannot draw that."}])).encode()
    outcome = streamed(body, tmp_path)
    assert outcome.kind is OutcomeKind.REFUSAL
    assert list(tmp_path.iterdir()) == []


def test_abort_removes_every_spool(tmp_path: Path) -> None:
    body = json.dumps(answer([{"inlineData": {"mimeType": "image/png", "data": b64(PNG * 9)}}]))
    reader = StreamingAnswer(lambda r, s: classify(r, spooled=s), tmp_path, spool_after=8)
    reader.begin(200, {})
    reader.feed(body.encode()[: len(body) // 2])
    assert list(tmp_path.iterdir())  # spooling
    reader.abort()
    assert list(tmp_path.iterdir()) == []


def test_an_image_the_disk_refuses_is_kept_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    body = json.dumps(answer([{"inlineData": {"mimeType": "image/png", "data": b64(PNG * 9)}}]))
    monkeypatch.setattr(storage, "write_all", full)
    outcome = streamed(body.encode(), tmp_path, cuts=[50, 90, 200])
    assert [(i.data, i.spooled) for i in outcome.images] == [(PNG * 9, None)]
    assert list(tmp_path.iterdir()) == []


def test_a_spooled_image_is_moved_into_place_with_its_digest(tmp_path: Path) -> None:
    body = json.dumps(answer([{"inlineData": {"mimeType": "image/png", "data": b64(PNG)}}]))
    outcome = streamed(body.encode(), tmp_path / ".tmp", after=0)
    spooled = outcome.images[0].spooled
    assert isinstance(spooled, SpooledFile)
    (tmp_path / "images").mkdir()
    [stored] = store_images(tmp_path, "row-1", outcome.images)
    assert (tmp_path / stored.rel_path).read_bytes() == PNG
    assert (stored.sha256, stored.width, stored.height) == (hashlib.sha256(PNG).hexdigest(), 1, 1)
    assert list((tmp_path / ".tmp").iterdir()) == []
    [written] = store_images(tmp_path, "row-2", (ImagePart(PNG, "image/png"),))
    modes = {(tmp_path / s.rel_path).stat().st_mode for s in (stored, written)}
    assert len(modes) == 1  # the same permissions as an image written from memory


def test_a_run_stores_streamed_images_as_before(tmp_path: Path) -> None:
    """Realistic 1K answers (~1.4 MB) are spooled in a run: the ledger's digests are the
    files', verify finds nothing wrong, and no temp file is left."""
    rows = [{"id": f"r{i}", "prompt": f"a lamp {i}"} for i in range(3)]
    manifest, out = write_csv(tmp_path / "m.csv", rows), tmp_path / "out"
    app = create_app(EmulatorConfig(payload=Payload.REALISTIC))
    anyio.run(run_manifest, run_config(manifest, out, concurrency=2), EmulatorTransport(app))
    ledger = pq.read_table(out / "ledger.parquet").to_pylist()
    assert {r["status"] for r in ledger} == {"succeeded"}
    for row in ledger:
        [rel], [digest] = row["output_paths"], row["sha256"]
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == digest
    assert verify(out).problems == []
    assert list((out / ".tmp").iterdir()) == []


def test_a_non_2xx_answer_is_read_whole(tmp_path: Path) -> None:
    body = json.dumps({"error": {"code": 500, "message": "x", "data": b64(PNG * 9)}}).encode()
    assert_same(whole(body, 500), streamed(body, tmp_path, [5, 40], status=500), tmp_path)


def test_padding_inside_a_value_is_not_spooled_whatever_the_cut(tmp_path: Path) -> None:
    """``QQ==`` ending the groups decoded from one piece, with more groups after it: not one
    value's base64, so the answer reads as it does whole, however the pieces fall."""
    head = b64(PNG)[:8]
    value = head + "QQ==" + b64(PNG)
    body = json.dumps(answer([{"inlineData": {"mimeType": "image/png", "data": value}}])).encode()
    padded_end = body.index(b"QQ==") + 4
    for cut in range(padded_end, padded_end + 8):  # a piece ends 0-7 characters after it
        folder = tmp_path / str(cut)
        assert_same(whole(body), streamed(body, folder, [cut]), folder)


@pytest.mark.parametrize(
    ("after", "extra", "spooled"),
    [
        (4 << 20, {}, False),  # no value can reach the spool length: read whole
        (100, {}, True),  # the length allows one: streamed
        # A compressed length says nothing of the JSON's: streamed.
        (4096, {"content-length": "1000", "content-encoding": "gzip"}, True),
    ],
)
def test_an_answer_whose_length_rules_out_a_spool_is_read_whole(
    tmp_path: Path, after: int, extra: dict[str, str], spooled: bool
) -> None:
    body = real("flash")  # fed as it was decoded, whatever the header says
    reader = StreamingAnswer(lambda r, s: classify(r, spooled=s), tmp_path, spool_after=after)
    headers = {"content-type": "application/json", "content-length": str(len(body)), **extra}
    reader.begin(200, headers)
    for start in range(0, len(body), 65536):
        reader.feed(body[start : start + 65536])
    got = reader.finish()
    assert_same(whole(body), got, tmp_path)
    assert [bool(image.spooled) for image in got.images] == [spooled]
