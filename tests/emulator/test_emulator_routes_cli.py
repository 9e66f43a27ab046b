"""`nanobatch emulator`'s route and tier flags, end to end through the real command."""

from __future__ import annotations

import httpx
import pytest
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.emulator import EmulatorProcess
from tests.emulator.emulator_helpers import FLASH_25, FLASH_31, body

VERTEX = "/v1/projects/acme/locations/global/publishers/google/models/{m}:generateContent"
FLEX = {"x-vertex-ai-llm-request-type": "shared", "x-vertex-ai-llm-shared-request-type": "flex"}
ARGS = [
    "--time-scale", "0.001", "--flex-latency", "5", "--shed-status", "429",
    "--no-flex", FLASH_25, "--token-ttl", "30", "--bearer", "issued",
    "--vertex-projects", "acme", "--error-array", "1",
    "--chat-shape", "markdown", "--chat-errors", "upstream",
]  # fmt: skip


def test_route_flags_shape_the_answers_of_the_running_command() -> None:
    with EmulatorProcess(ARGS) as emulator:
        url = emulator.base_url
        form = {"grant_type": "refresh_token", "client_id": "c", "client_secret": "s"}
        token = httpx.post(f"{url}/token", data={**form, "refresh_token": "r"}).json()
        assert token["expires_in"] == 30
        auth = {"authorization": f"Bearer {token['access_token']}"}
        flex = httpx.post(url + VERTEX.format(m=FLASH_31), json=body(), headers={**auth, **FLEX})
        unknown = httpx.post(
            url + VERTEX.format(m=FLASH_31), json=body(), headers={"authorization": "Bearer x"}
        )
        no_flex = httpx.post(url + VERTEX.format(m=FLASH_25), json=body(), headers={**auth, **FLEX})
        shed = httpx.post(
            url + VERTEX.format(m=FLASH_31), json=body("#shed a fox"), headers={**auth, **FLEX}
        )
        chat = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": FLASH_31, "messages": [{"role": "user", "content": "a fox #503x1"}]},
            headers={"authorization": "Bearer sk"},
        )
        stats = emulator.stats()
    assert flex.json()["usageMetadata"]["trafficType"] == "ON_DEMAND_FLEX"
    assert unknown.status_code == 401
    assert unknown.json()[0]["error"]["status"] == "UNAUTHENTICATED"  # --error-array 1
    assert no_flex.status_code == 400
    assert shed.status_code == 429
    assert chat.json()["error"]["type"] == "upstream_error"
    assert stats["tokens_issued"] == 1
    assert stats["by_tier"]["flex"]["billed"] == 1
    assert stats["by_tier"]["flex"]["shed"] == 1


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--chat-shape", "gif"),
        ("--chat-errors", "loud"),
        ("--bearer", "some"),
        ("--shed-status", "500"),
        ("--time-scale", "0"),
        ("--flex-latency", "soon"),
        ("--error-array", "2"),
    ],
)
def test_a_bad_route_flag_is_one_line_and_exit_2(flag: str, value: str) -> None:
    result = CliRunner().invoke(app, ["emulator", flag, value])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output
