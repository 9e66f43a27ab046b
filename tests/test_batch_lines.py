"""Request and result lines: a request line carries the online body unchanged; a result line
reads to the same outcome as the online answer to the same request, a line's error to the
online error kinds, and any garbage to a failed line, never an exception."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.core.types import Delivery, OutcomeKind, RawResponse
from pipeline.emulator import parse_batch_delay, parse_batch_faults
from pipeline.providers.gemini.batch.lines import (
    UNREADABLE,
    line_error,
    read_result_line,
    request_line,
)
from pipeline.providers.gemini.classify import classify
from tests.batch_wire_helpers import KEY, batch_config, prepared, wire
from tests.emulator.emulator_helpers import FLASH_31, FakeClock

PROMPTS = {
    "success": "a red fox",
    "blocked": "a red fox #block",
    "blocked_other": "a red fox #block:OTHER",
    "unsafe": "a red fox #unsafe",
    "text_only": "a red fox #noimage",
    "prohibited": "a red fox #prohibited",
}


def test_a_request_line_splices_the_online_body_unchanged() -> None:
    request = prepared('a cat with a "quote" and a \\ backslash', image_size="1K")
    line = request_line('row "1"', request)
    assert line == b'{"key":"row \\"1\\"","request":' + request.body + b"}\n"
    assert orjson.loads(line) == {"key": 'row "1"', "request": orjson.loads(request.body)}
    assert line.count(b"\n") == 1


async def test_result_lines_read_as_the_online_answers_to_the_same_requests(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    emulator = batch_config(clock=clock, batch_delay=parse_batch_delay("10"))
    async with wire(emulator) as (batch, client, _):
        online = {}
        for name, prompt in PROMPTS.items():
            request = prepared(prompt, image_size="512")
            headers = {"content-type": "application/json", "x-goog-api-key": KEY}
            answer = await client.fetch("POST", request.url, request.body, headers, 30.0)
            assert isinstance(answer, RawResponse)
            online[name] = classify(answer)
        lines = [
            batch.request_line(name, prepared(prompt, image_size="512"))
            for name, prompt in PROMPTS.items()
        ]
        job = await batch.create_job(client, model=FLASH_31, display_name="j", inline=lines)
        clock.advance(10)
        dest = tmp_path / "results.jsonl"
        await batch.download_results(client, await batch.get_job(client, job.name), dest)
    read = [batch.read_result_line(line) for line in dest.read_bytes().splitlines()]
    batched = {r.key: r.outcome for r in read}
    assert set(batched) == set(PROMPTS)
    for name, outcome in online.items():
        got = batched[name]
        assert (got.kind, got.reason) == (outcome.kind, outcome.reason), name
        assert [i.mime_type for i in got.images] == [i.mime_type for i in outcome.images]
        assert got.delivery is outcome.delivery is Delivery.ANSWERED
    assert batched["success"].kind is OutcomeKind.SUCCESS
    assert batched["blocked"].reason.startswith("PROMPT_BLOCKED")
    assert batched["unsafe"].kind is OutcomeKind.REFUSAL
    assert batched["text_only"].reason == "TEXT_ONLY"


async def test_error_lines_read_as_online_errors_and_are_not_billed(tmp_path: Path) -> None:
    clock = FakeClock()
    emulator = batch_config(
        clock=clock,
        batch_delay=parse_batch_delay("10"),
        batch_faults=parse_batch_faults("line_error=1"),
    )
    async with wire(emulator) as (batch, client, _):
        lines = [batch.request_line(f"row-{i}", prepared(f"a cat {i}")) for i in range(3)]
        job = await batch.create_job(client, model=FLASH_31, display_name="j", inline=lines)
        clock.advance(10)
        dest = tmp_path / "results.jsonl"
        await batch.download_results(client, await batch.get_job(client, job.name), dest)
    read = [batch.read_result_line(line) for line in dest.read_bytes().splitlines()]
    assert {r.key for r in read} == {"row-0", "row-1", "row-2"}
    for result in read:
        assert result.outcome.kind is OutcomeKind.TRANSIENT  # INTERNAL (13) is a 500
        assert result.outcome.reason == "SERVER_ERROR_500"
        assert result.outcome.delivery is Delivery.ERROR


@pytest.mark.parametrize(
    ("error", "kind", "reason"),
    [
        ({"code": 8, "message": "Resource has been exhausted"}, OutcomeKind.RATE_LIMIT, None),
        ({"code": 14, "message": "unavailable"}, OutcomeKind.TRANSIENT, "SERVER_ERROR_503"),
        ({"code": 4, "message": "deadline"}, OutcomeKind.TRANSIENT, "SERVER_ERROR_504"),
        ({"code": 3, "message": "bad"}, OutcomeKind.ROW_ERROR, "INVALID_REQUEST"),
        ({"code": 7, "message": "no"}, OutcomeKind.RUN_ERROR, "PERMISSION_DENIED"),
        ({"code": 429, "message": "http code"}, OutcomeKind.RATE_LIMIT, None),
        ({"status": "UNAVAILABLE"}, OutcomeKind.TRANSIENT, "SERVER_ERROR_503"),
        ({}, OutcomeKind.TRANSIENT, "SERVER_ERROR_500"),
        ("a string", OutcomeKind.ROW_ERROR, UNREADABLE),
    ],
)
def test_a_line_error_maps_to_the_online_error_kinds(
    error: object, kind: OutcomeKind, reason: str | None
) -> None:
    outcome = line_error(error)
    assert outcome.kind is kind
    assert reason is None or outcome.reason == reason
    assert outcome.delivery is Delivery.ERROR


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"not json",
        b'{"key": "row-1", "response": ',  # cut short
        b"[]",
        b'"row-1"',
        b'{"response": {"candidates": []}}',  # no key
        b'{"key": "", "response": {}}',
        b'{"key": ["row-1"], "response": {}}',
        b'{"metadata": {"key": null}, "error": {"code": 13}}',
    ],
)
def test_a_line_without_a_readable_key_is_a_failed_line(line: bytes) -> None:
    result = read_result_line(line)
    assert result.key is None
    assert result.outcome.kind is OutcomeKind.ROW_ERROR
    assert result.outcome.reason == UNREADABLE


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (b'{"key": "row-1"}', OutcomeKind.ROW_ERROR),  # neither response nor error
        (b'{"key": "row-1", "response": "text"}', OutcomeKind.TRANSIENT),  # malformed, as online
        (b'{"key": "row-1", "response": {"candidates": [{"content": 5}]}}', OutcomeKind.TRANSIENT),
        (b'{"metadata": {"key": "row-1"}, "error": {"code": 13}}', OutcomeKind.TRANSIENT),
    ],
)
def test_a_keyed_line_that_does_not_read_fails_that_row(line: bytes, kind: OutcomeKind) -> None:
    result = read_result_line(line)
    assert result.key == "row-1"
    assert result.outcome.kind is kind


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(["key", "response", "error", "metadata", "candidates"]), _JSON, max_size=4
    )
    | _JSON
)
def test_arbitrary_json_never_breaks_the_line_reader(value: Any) -> None:
    line = json.dumps(value).encode()  # big integers and NaN too
    result = read_result_line(line)
    assert result.key is None or isinstance(result.key, str)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_break_the_line_reader(line: bytes) -> None:
    read_result_line(line)
