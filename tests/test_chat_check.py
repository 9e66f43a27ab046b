"""The gateway check before the first paid request: one unbilled ``GET {base}/models`` stops a
wrong --base-url, a key the gateway refuses, or a model it does not list, with one line (exit 2)
that never holds the key; an answer that says nothing lets the run start."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.commands.run import run_and_report
from pipeline.core.config import ApiKey, RunConfig
from pipeline.core.routes import Route
from pipeline.core.types import RawResponse
from pipeline.emulator import EmulatorApp, EmulatorConfig, EmulatorTransport, Payload, create_app
from pipeline.providers.openai_chat.check import Gateway, judge
from tests.helpers import run_config, write_csv

KEY = "sk-live-gateway-0123456789abcdef"
MODEL = "google/gemini-3.1-flash-image-preview"
GATEWAY = Gateway("https://gw.example/v1", MODEL, "the key from NANOBATCH_GATEWAY_KEY")


def answer(status: int, body: object = b"", **headers: str) -> RawResponse:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return RawResponse(status, headers, data)


def listing(*ids: str) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": i, "object": "model"} for i in ids]}


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (answer(200, listing("openai/gpt-image-1", MODEL)), None),
        (answer(200, listing()), None),  # an empty list says nothing about the model
        (answer(200, listing("google/gemini-3.1-flash-image")),
         "does not list the model google/gemini-3.1-flash-image-preview (did you mean "
         "google/gemini-3.1-flash-image?)"),
        (answer(200, b"<html>OpenRouter</html>"), "did not answer GET https://gw.example/v1/models"),
        (answer(200, {"models": []}), "--base-url must be the address before /chat/completions"),
        (answer(401, {"error": {"message": "User not found.", "code": 401}}),
         "refused the key from NANOBATCH_GATEWAY_KEY (HTTP 401: User not found): pass the "
         "gateway's own key"),
        (answer(403, {"message": "forbidden"}), "(HTTP 403: forbidden)"),
        (answer(402, {"error": {"message": "Insufficient credits"}}), "out of credit"),
        (answer(404, b"Not Found"), "has no https://gw.example/v1/models (HTTP 404)"),
        (answer(301, location="https://gw.example/api/v1/models"), "a redirect to https://"),
        (answer(400, {"error": {"message": "bad"}}), "refused GET https://gw.example/v1/models"),
        (answer(429, {"error": {"message": "slow down"}}), ""),
        (answer(503, b"upstream busy"), ""),
        (answer(408), ""),
    ],
    ids=["listed", "empty-list", "not-listed", "html", "not-a-list", "401", "403", "402",
         "404", "redirect", "400", "429", "503", "408"],
)  # fmt: skip
def test_the_list_answer_says_what_is_wrong(response: RawResponse, expected: str | None) -> None:
    problem = judge(response, GATEWAY)
    if expected:
        assert problem is not None
        assert expected in problem
        assert "\n" not in problem
    else:
        assert problem == expected


keys = st.sampled_from(["data", "id", "error", "message"]) | st.text(max_size=4)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(status=st.integers(100, 599), document=json_values)
def test_any_json_answer_is_judged_without_crashing(status: int, document: object) -> None:
    judge(answer(status, document), GATEWAY)


def emulator(**kwargs: Any) -> EmulatorApp:
    return create_app(EmulatorConfig(payload=Payload.COMPACT, api_key=KEY, **kwargs))


def chat_config(tmp_path: Path, base: str, **overrides: Any) -> RunConfig:
    rows = [{"id": f"r{i}", "prompt": f"a kettle {i}"} for i in range(5)]
    values: dict[str, Any] = {"provider": Route.OPENAI_CHAT, "base_url": base, "model": MODEL,
                              "api_key": ApiKey(KEY, "NANOBATCH_GATEWAY_KEY")}  # fmt: skip
    return run_config(write_csv(tmp_path / "m.csv", rows), tmp_path / "out", **values | overrides)


def report(config: RunConfig, app: EmulatorApp) -> tuple[int, str]:
    said: list[str] = []
    code = run_and_report(config, EmulatorTransport(app), argv=[], out=said.append, err=said.append)
    return code, "\n".join(said)


@pytest.mark.parametrize(
    ("base", "overrides", "expected"),
    [
        ("http://emulator.invalid/v1", {"api_key": ApiKey("sk-wrong-0123456789", "--api-key")},
         "refused the key from --api-key (HTTP 401: User not found)"),
        ("http://emulator.invalid/api", {}, "--base-url must be the address before"),
        ("http://emulator.invalid/v1", {"model": "google/gemini-3.1-flash-imag-preview"},
         "did you mean google/gemini-3.1-flash-image-preview"),
    ],
    ids=["wrong-key", "wrong-base-url", "wrong-model"],
)  # fmt: skip
def test_a_wrong_key_url_or_model_stops_the_run_before_anything_is_paid(
    tmp_path: Path, base: str, overrides: dict[str, Any], expected: str
) -> None:
    app = emulator()
    config = chat_config(tmp_path, base, **overrides)

    code, printed = report(config, app)

    assert code == 2, printed
    assert expected in printed
    assert len([line for line in printed.splitlines() if expected in line]) == 1
    assert KEY not in printed
    assert "sk-wrong-0123456789" not in printed
    counters: dict[str, Any] = dict(app.stats_snapshot())
    assert counters["billed"] == 0
    assert counters["by_status"].get("200", 0) == 0  # no generation was answered
    assert not (tmp_path / "out" / "ledger.parquet").exists()


@pytest.mark.parametrize("base", ["http://emulator.invalid/v1", "http://emulator.invalid/api/v1"])
def test_a_right_gateway_is_read_once_then_used(tmp_path: Path, base: str) -> None:
    app = emulator()

    code, printed = report(chat_config(tmp_path, base), app)

    assert code == 0, printed
    counters: dict[str, Any] = dict(app.stats_snapshot())
    assert (counters["model_reads"], counters["billed"]) == (1, 5)


def test_a_key_the_gateway_echoes_back_is_blanked_out(tmp_path: Path) -> None:
    app = emulator()
    # A model id holding the key stands in for a gateway that quotes the key in its refusal.
    config = chat_config(tmp_path, "http://emulator.invalid/v1", model=f"google/{KEY}")

    code, printed = report(config, app)

    assert code == 2, printed
    assert "does not list the model google/***" in printed
    assert KEY not in printed
