"""Fidelity proof for batch mode: the official google-genai SDK, unmodified, uploads a JSONL file,
creates jobs from it and from inline requests, polls them until done and downloads the results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pipeline.emulator import BackgroundEmulator, parse_batch_delay
from tests.emulator.emulator_helpers import FLASH_31, FakeClock, Lazy, config

if TYPE_CHECKING:
    from google import genai
    from google.genai import types
else:
    genai, types = Lazy("google.genai"), Lazy("google.genai.types")

PROMPTS = ["a lighthouse at dusk", "a red kite #unsafe", "a paper boat"]


@pytest.mark.parametrize("version", ["v1beta", "v1"])
def test_sdk_runs_file_and_inline_batches_end_to_end(tmp_path: Path, version: str) -> None:
    clock = FakeClock()
    emulator_config = config(clock=clock, batch_delay=parse_batch_delay("120"))
    with BackgroundEmulator(emulator_config) as running:
        options = types.HttpOptions(base_url=running.base_url, api_version=version)
        client = genai.Client(api_key="any-key-will-do", http_options=options)
        requests = tmp_path / "requests.jsonl"
        with requests.open("w") as out:
            for i, prompt in enumerate(PROMPTS):
                request = {
                    "contents": [{"parts": [{"text": prompt}], "role": "user"}],
                    "generation_config": {"image_config": {"image_size": "512"}},
                }
                out.write(json.dumps({"key": f"row-{i}", "request": request}) + "\n")
        uploaded = client.files.upload(
            file=requests, config=types.UploadFileConfig(mime_type="jsonl", display_name="in")
        )
        assert uploaded.name is not None
        assert uploaded.size_bytes == requests.stat().st_size
        from_file = client.batches.create(
            model=FLASH_31, src=uploaded.name, config={"display_name": "from a file"}
        )
        inline = client.batches.create(
            model=FLASH_31,
            src=[
                types.InlinedRequest(
                    contents="a paper boat",
                    metadata={"key": "boat"},
                    config=types.GenerateContentConfig(
                        image_config=types.ImageConfig(image_size="512")
                    ),
                )
            ],
        )
        assert from_file.state == types.JobState.JOB_STATE_PENDING
        assert from_file.name is not None
        assert inline.name is not None
        polls = 0
        while not (job := client.batches.get(name=from_file.name)).done:
            polls += 1
            clock.advance(30)  # instead of sleeping
        assert polls >= 3
        assert job.state == types.JobState.JOB_STATE_SUCCEEDED
        assert job.dest is not None
        assert job.dest.file_name is not None
        results = tmp_path / "results.jsonl"
        client.files.download(file=job.dest.file_name, destination=str(results))
        inline_job = client.batches.get(name=inline.name)
        listed = [listed.name for listed in client.batches.list()]
        stats = running.app.stats_snapshot()
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    answers = {
        line["key"]: types.GenerateContentResponse.model_validate(line["response"])
        for line in lines
    }
    assert sorted(answers) == ["row-0", "row-1", "row-2"]
    image = answers["row-0"].candidates[0].content.parts[-1].as_image()  # type: ignore[index,union-attr]
    assert image is not None
    assert image.image_bytes is not None
    assert image.image_bytes.startswith(b"\x89PNG")
    refused = answers["row-1"].candidates[0]  # type: ignore[index]
    assert refused.finish_reason == types.FinishReason.IMAGE_SAFETY
    assert inline_job.state == types.JobState.JOB_STATE_SUCCEEDED
    assert inline_job.dest is not None
    (boat,) = inline_job.dest.inlined_responses or []
    assert boat.metadata == {"key": "boat"}
    assert boat.response is not None
    assert boat.response.candidates[0].finish_reason == types.FinishReason.STOP  # type: ignore[index]
    assert set(listed) == {from_file.name, inline.name}
    assert stats["batch_billed"] == 3  # two images from the file (one refused), one inline
    assert stats["files_uploaded"] == 1
    assert stats["billed_duplicates"] == 1  # "a paper boat" at 512 was paid for twice
