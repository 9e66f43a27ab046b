"""``--provider openai-chat`` from the command line: the gateway's own key (never Google's),
``--base-url`` required, a run against the emulator's gateway over a real socket, --emulate,
and validate showing the chat request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.emulator import BackgroundEmulator, EmulatorConfig, Payload
from tests.helpers import make_image, write_csv

GATEWAY_KEY = "sk-or-v1-gateway-0123456789"
MODEL = "google/gemini-3.1-flash-image-preview"


def manifest(tmp_path: Path) -> Path:
    photo = make_image(tmp_path / "ref.png")
    rows: list[dict[str, Any]] = [
        {"id": "a", "prompt": "a lamp", "images": [str(photo)]},
        {"id": "b", "prompt": "a fox"},
    ]
    return write_csv(tmp_path / "m.csv", rows)


def test_a_run_sends_the_gateway_key_never_googles(tmp_path: Path) -> None:
    out = tmp_path / "out"
    config = EmulatorConfig(api_key=GATEWAY_KEY, payload=Payload.COMPACT)  # another key: 401
    with BackgroundEmulator(config) as server:
        args = ["run", str(manifest(tmp_path)), "--out", str(out), "--provider", "openai-chat",
                "--base-url", f"{server.base_url}/api/v1", "--model", MODEL]  # fmt: skip
        env = {"NANOBATCH_GATEWAY_KEY": GATEWAY_KEY, "GEMINI_API_KEY": "AIza-google-key"}
        result = CliRunner().invoke(app, args, env=env)
        counters = dict(server.app.stats_snapshot())
    assert result.exit_code == 0, result.output
    rows = pq.read_table(out / "ledger.parquet").to_pylist()
    assert {(r["row_id"], r["status"]) for r in rows} == {("a", "succeeded"), ("b", "succeeded")}
    assert sum(r["cost_usd"] for r in rows) == pytest.approx(counters["billed_usd"])
    assert counters["billed"] == 2
    assert counters["requests"] == 2


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ([], {"NANOBATCH_GATEWAY_KEY": GATEWAY_KEY}, "needs --base-url"),
        (["--base-url", "gateway.example/v1"], {"NANOBATCH_GATEWAY_KEY": GATEWAY_KEY},
         "expected an http(s)://"),
        (["--base-url", "https://gateway.example/v1"],
         {"GEMINI_API_KEY": "AIza-google", "GOOGLE_API_KEY": "AIza-google"}, "no gateway key"),
        (["--base-url", "https://gateway.example/v1", "--auth", "header"],
         {"NANOBATCH_GATEWAY_KEY": GATEWAY_KEY}, "Bearer token"),
    ],
    ids=["no-base-url", "no-scheme", "only-googles-key", "auth-header"],
)  # fmt: skip
def test_a_gateway_run_that_cannot_start_says_why_and_makes_nothing(
    tmp_path: Path, args: list[str], env: dict[str, str], expected: str
) -> None:
    out = tmp_path / "out"
    command = ["run", str(manifest(tmp_path)), "--out", str(out), "--provider", "openai-chat"]
    result = CliRunner().invoke(app, [*command, *args], env=env)
    assert result.exit_code == 2
    assert expected in result.output
    assert not (out / "ledger.parquet").exists()  # nothing sent, nothing recorded


def test_emulate_rehearses_the_gateway_route(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["run", str(manifest(tmp_path)), "--out", str(out), "--provider", "openai-chat",
            "--model", MODEL, "--emulate"]  # fmt: skip
    result = CliRunner().invoke(app, args, env={})
    assert result.exit_code == 0, result.output
    rows = pq.read_table(out / "ledger.parquet").to_pylist()
    assert {r["status"] for r in rows} == {"succeeded"}


def test_validate_shows_the_chat_request(tmp_path: Path) -> None:
    args = ["validate", str(manifest(tmp_path)), "--provider", "openai-chat", "--model", MODEL,
            "--image-size", "2K", "--format", "json"]  # fmt: skip
    result = CliRunner().invoke(app, args, env={})
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    body = report["example_request"]["body"]
    assert body["model"] == MODEL
    assert body["image_config"] == {"image_size": "2K"}
    image, prompt = body["messages"][0]["content"]
    assert image["image_url"]["url"].startswith("data:image/png;base64,")
    assert image["image_url"]["url"].endswith("chars)")  # shortened for reading
    assert prompt == {"type": "text", "text": "a lamp"}
