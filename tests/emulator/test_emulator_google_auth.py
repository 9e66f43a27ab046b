"""Fidelity proof for OAuth: google-auth, which no one here wrote, gets tokens from the emulator
the three ways Application Default Credentials do (a service-account file whose ``token_uri``
points at it, user credentials given the emulator's token URL, the GCE metadata server), and
google-genai configured for Vertex generates an image with them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import google.auth
import httpx
import pytest
from google.auth.transport.requests import Request
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account

from pipeline.emulator import BackgroundEmulator
from tests.emulator.emulator_helpers import FLASH_31, Lazy, body, config, rsa_private_key

if TYPE_CHECKING:
    from google import genai
    from google.genai import types
else:
    genai, types = Lazy("google.genai"), Lazy("google.genai.types")
from tests.emulator.routes_helpers import GLOBAL, stats

CLOUD = "https://www.googleapis.com/auth/cloud-platform"


@pytest.fixture(scope="module")
def running() -> Iterator[BackgroundEmulator]:
    # Only tokens the emulator issued pass, so a 200 proves the token came from it.
    with BackgroundEmulator(config(bearer="issued", time_scale=1e-4)) as background:
        yield background


@pytest.fixture(scope="module")
def private_key() -> str:
    return rsa_private_key()


def _service_account(base_url: str, private_key: str) -> dict[str, str]:
    return {
        "type": "service_account",
        "project_id": "acme",
        "private_key_id": "k1",
        "private_key": private_key,
        "client_email": "batch@acme.iam.gserviceaccount.com",
        "client_id": "1234",
        "token_uri": f"{base_url}/token",
    }


def _generate_with(base_url: str, token: str) -> int:
    response = httpx.post(
        base_url + GLOBAL.format(model=FLASH_31),
        json=body(),
        headers={"authorization": f"Bearer {token}"},
        timeout=30,
    )
    return response.status_code


def test_adc_from_a_service_account_file_gets_a_token_here(
    running: BackgroundEmulator,
    private_key: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(_service_account(running.base_url, private_key)))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    before = stats(running.app)["tokens_issued"]
    credentials, project = google.auth.default(scopes=[CLOUD])
    credentials.refresh(Request())  # type: ignore[no-untyped-call]
    token = credentials.token
    assert project == "acme"
    assert isinstance(token, str)
    assert token.startswith("ya29.")
    assert stats(running.app)["tokens_issued"] == before + 1
    assert _generate_with(running.base_url, token) == 200


def test_authorized_user_credentials_get_a_token_here(running: BackgroundEmulator) -> None:
    info = {
        "type": "authorized_user",
        "client_id": "764086051850-emulator.apps.googleusercontent.com",
        "client_secret": "d-FL95Q19q7MQmFpd7hHD0Ty",
        "refresh_token": "1//0g-emulator-refresh",
    }
    # google-auth ignores a token_uri in an authorized-user file (it always uses Google's), so
    # user credentials reach the emulator only through with_token_uri.
    credentials = user_credentials.Credentials.from_authorized_user_info(info)  # type: ignore[no-untyped-call]
    assert credentials.token_uri == "https://oauth2.googleapis.com/token"
    credentials = credentials.with_token_uri(f"{running.base_url}/token")
    credentials.refresh(Request())
    assert credentials.valid
    assert _generate_with(running.base_url, credentials.token) == 200


_METADATA_SCRIPT = """
import json, google.auth, httpx
from google.auth.transport.requests import Request
credentials, project = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
credentials.refresh(Request())
path = "/v1/projects/%s/locations/global/publishers/google/models/gemini-3.1-flash-image-preview"
status = httpx.get(BASE + path % project, headers={"authorization": "Bearer " + credentials.token})
print(json.dumps({"kind": type(credentials).__module__, "project": project,
                  "status": status.status_code}))
"""


def test_adc_finds_the_metadata_server_at_gce_metadata_host(
    running: BackgroundEmulator, tmp_path: Path
) -> None:
    host = running.base_url.removeprefix("http://")
    env = {k: v for k, v in os.environ.items() if k != "GOOGLE_APPLICATION_CREDENTIALS"}
    env |= {
        "GCE_METADATA_HOST": host,
        "GCE_METADATA_IP": host,
        "CLOUDSDK_CONFIG": str(tmp_path),  # no gcloud user credentials to find first
        "GOOGLE_CLOUD_PROJECT": "",
    }
    script = f"BASE = {running.base_url!r}\n" + _METADATA_SCRIPT
    before = stats(running.app)["tokens_issued"]
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found == {
        "kind": "google.auth.compute_engine.credentials",
        "project": "emulator-project",
        "status": 200,
    }
    assert stats(running.app)["tokens_issued"] == before + 1


def test_google_genai_on_vertex_generates_with_service_account_credentials(
    running: BackgroundEmulator, private_key: str
) -> None:
    credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
        _service_account(running.base_url, private_key), scopes=[CLOUD]
    )
    client = genai.Client(
        vertexai=True,
        project="acme",
        location="global",
        credentials=credentials,
        http_options=types.HttpOptions(base_url=running.base_url),
    )
    response = client.models.generate_content(
        model=FLASH_31,
        contents="a lighthouse at dusk",
        config=types.GenerateContentConfig(
            service_tier=types.ServiceTier.FLEX,
            image_config=types.ImageConfig(aspect_ratio="16:9"),
        ),
    )
    assert response.candidates
    content = response.candidates[0].content
    assert content is not None
    assert content.parts
    image = content.parts[-1].as_image()
    assert image is not None
    assert image.image_bytes is not None
    assert image.image_bytes.startswith(b"\x89PNG")
    assert response.usage_metadata is not None
    assert response.usage_metadata.traffic_type == types.TrafficType.ON_DEMAND_FLEX
    assert stats(running.app)["by_route"]["vertex"]["billed"] >= 1
