"""Helpers for the Vertex tests: service-account key files whose tokens come from the emulator,
an environment where Application Default Credentials find only what the test gives them, and
run configs for the Vertex route."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.core.config import RunConfig
from pipeline.core.routes import Route
from pipeline.emulator import EmulatorApp, EmulatorConfig, Payload, create_app
from tests.emulator.emulator_helpers import rsa_private_key
from tests.helpers import run_config

EMULATOR = "http://emulator.invalid"  # the in-process emulator answers every host
PROJECT = "acme"
# Every token the emulator issues starts so: no output may ever contain one.
TOKEN_PREFIX = "ya29."


def service_account(path: Path, token_uri: str = f"{EMULATOR}/token", **fields: Any) -> Path:
    """A service-account key file whose tokens come from ``token_uri``."""
    info: dict[str, Any] = {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "k1",
        "private_key": rsa_private_key(),
        "client_email": f"batch@{PROJECT}.iam.gserviceaccount.com",
        "client_id": "1234",
        "token_uri": token_uri,
    }
    info.update(fields)
    path.write_text(json.dumps({k: v for k, v in info.items() if v is not None}))
    return path


def adc_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, key_file: Path | None) -> None:
    """Application Default Credentials see ``key_file`` (or nothing), no gcloud config, no
    project or location from the environment."""
    for name in (
        "GOOGLE_CLOUD_PROJECT",
        "GOOGLE_CLOUD_LOCATION",
        "GOOGLE_CLOUD_QUOTA_PROJECT",
        "GOOGLE_API_KEY",
        "GCE_METADATA_HOST",
        "GCE_METADATA_IP",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))
    if key_file is None:
        monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    else:
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))


def vertex_config(manifest: Path, out: Path, **overrides: Any) -> RunConfig:
    """A Vertex run at the in-process emulator, with OAuth (no key) unless told otherwise."""
    values: dict[str, Any] = {
        "provider": Route.VERTEX,
        "project": PROJECT,
        "location": "global",
        "api_key": None,
        "concurrency": 4,
    }
    values.update(overrides)
    return run_config(manifest, out, **values)


def vertex_emulator(**overrides: Any) -> EmulatorApp:
    """The emulator as Vertex: only tokens it issued pass, one project exists."""
    values: dict[str, Any] = {
        "payload": Payload.COMPACT,
        "bearer": "issued",
        "vertex_projects": frozenset({PROJECT}),
    }
    values.update(overrides)
    return create_app(EmulatorConfig(**values))


def outputs_holding(root: Path, secret: str) -> list[str]:
    """Files under ``root`` whose bytes contain ``secret``."""
    needle = secret.encode()
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]
