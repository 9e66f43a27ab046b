"""The emulator on a real socket: faults as a socket shows them, the thread and process runners."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys

import httpx
import pytest

from pipeline.emulator import BackgroundEmulator, EmulatorProcess, parse_faults
from tests.emulator.emulator_helpers import FLASH_31, body, config, png_b64

PATH = f"/v1beta/models/{FLASH_31}:generateContent"
HEADERS = {"x-goog-api-key": "k"}

# What the `nanobatch emulator` command does, reduced to what these tests need.
_CHILD = """
import sys
from pipeline.emulator import EmulatorConfig, Payload, parse_faults, serve
faults = parse_faults(sys.argv[1] if len(sys.argv) > 1 else "")
serve(EmulatorConfig(payload=Payload.COMPACT, faults=faults), "127.0.0.1", 0,
      on_ready=lambda url: print(f"nanobatch emulator listening on {url}", flush=True))
"""


class _ServeProcess(EmulatorProcess):
    """EmulatorProcess running ``serve`` directly, independent of the CLI's wiring."""

    def _command(self) -> list[str]:
        return [sys.executable, "-c", _CHILD, *self.args]


class _BrokenProcess(EmulatorProcess):
    def _command(self) -> list[str]:
        return [sys.executable, "-c", "import sys; sys.stderr.write('boom: bad flag'); sys.exit(2)"]


def test_background_emulator_serves_on_a_free_loopback_port() -> None:
    with BackgroundEmulator(config()) as running:
        assert running.base_url.startswith("http://127.0.0.1:")
        response = httpx.post(
            running.base_url + PATH, json=body(images=[(32, 18)]), headers=HEADERS
        )
        stats = httpx.get(running.base_url + "/_emulator/stats").json()
    assert response.status_code == 200
    assert stats == running.app.stats_snapshot()
    assert stats["billed"] == 1


def test_reset_on_a_real_socket_is_a_remote_protocol_error() -> None:
    with BackgroundEmulator(config()) as running, httpx.Client(base_url=running.base_url) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.post(PATH, json=body("#reset"), headers=HEADERS)
        # The connection pool recovers: the next request works.
        assert client.post(PATH, json=body("fine"), headers=HEADERS).status_code == 200
        assert running.app.stats_snapshot()["by_status"] == {"200": 1, "reset": 1}


def test_truncate_on_a_real_socket_is_a_complete_200_with_broken_json() -> None:
    with BackgroundEmulator(config()) as running:
        response = httpx.post(running.base_url + PATH, json=body("#truncate"), headers=HEADERS)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


def test_hang_on_a_real_socket_times_out_the_client_and_is_billed() -> None:
    faults = parse_faults("hang_s=60")
    with BackgroundEmulator(config(faults=faults)) as running:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(running.base_url + PATH, json=body("#hang"), headers=HEADERS, timeout=0.2)
        # The emulator notices the client left; the stats call is answered meanwhile.
        stats = httpx.get(running.base_url + "/_emulator/stats").json()
    assert stats["billed"] == 1


def test_large_request_bodies_arrive_whole() -> None:
    big = body(images=[(1500, 1500)] * 3)
    big["contents"][0]["parts"].insert(
        0, {"inlineData": {"mimeType": "image/png", "data": png_b64(2000, 1000)}}
    )
    with BackgroundEmulator(config()) as running:
        response = httpx.post(running.base_url + PATH, json=big, headers=HEADERS, timeout=30)
    assert response.status_code == 200


def test_emulator_process_starts_answers_resets_and_stops_cleanly() -> None:
    with _ServeProcess(["unsafe=1"]) as process:
        assert process.base_url.startswith("http://127.0.0.1:")
        response = httpx.post(process.base_url + PATH, json=body(), headers=HEADERS)
        assert response.json()["candidates"][0]["finishReason"] == "IMAGE_SAFETY"
        assert process.stats()["refused"] == 1
        process.reset()
        assert process.stats()["requests"] == 0
    assert process.returncode == 0


def test_emulator_process_reports_a_child_that_fails_to_start() -> None:
    with pytest.raises(RuntimeError, match="boom: bad flag"), _BrokenProcess():
        pass


def test_serve_stops_cleanly_on_sigint() -> None:
    # (SIGTERM is what EmulatorProcess sends on exit: covered above by its return code.)
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line.startswith("nanobatch emulator listening on http://127.0.0.1:")
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=20)
    assert child.returncode == 0, stderr
    assert "Traceback" not in stderr


def test_nanobatch_emulator_command_end_to_end() -> None:
    with contextlib.ExitStack() as stack:
        try:
            process = stack.enter_context(EmulatorProcess(["--seed", "3", "--faults", "503=1"]))
        except RuntimeError as error:
            if "No such command" in str(error):
                pytest.skip("pipeline.cli.app has no emulator command yet")
            raise
        response = httpx.post(process.base_url + PATH, json=body(), headers=HEADERS)
        assert response.status_code == 503
        assert process.stats()["by_status"] == {"503": 1}
    assert process.returncode == 0
