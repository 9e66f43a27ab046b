"""Runs through Vertex AI against the emulator: OAuth tokens from a service-account key file
(or the metadata server) that expire or are revoked mid-run, express mode's key, the route
check that stops a wrong project, location, scope, key or model before anything is billed,
Model Armor and error arrays under faults, and Flex."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
import structlog
from structlog.testing import capture_logs

from pipeline.commands.run import run_and_report
from pipeline.core.clock import VirtualClock
from pipeline.core.config import ApiKey
from pipeline.core.errors import UsageError
from pipeline.core.types import Tier
from pipeline.emulator import (
    BackgroundEmulator,
    EmulatorApp,
    EmulatorConfig,
    EmulatorTransport,
    Payload,
    parse_faults,
    parse_latency,
)
from pipeline.providers.auth import Token, TokenAuth
from pipeline.providers.http import HttpClient, new_http_client
from pipeline.providers.vertex.provider import VertexProvider
from pipeline.providers.vertex.urls import VertexRoute
from pipeline.run.result import RunResult
from pipeline.run.scheduler import run_manifest
from tests.commandline import nanobatch
from tests.helpers import write_csv
from tests.vertex_helpers import (
    EMULATOR,
    PROJECT,
    TOKEN_PREFIX,
    adc_env,
    outputs_holding,
    service_account,
    vertex_config,
    vertex_emulator,
)

GA = "gemini-3-pro-image"


def rows(n: int, *extra: str) -> list[dict[str, Any]]:
    prompts = [f"a product photo number {i}" for i in range(n)] + list(extra)
    return [{"id": f"r{i:03d}", "prompt": p} for i, p in enumerate(prompts)]


def ledger(out: Path) -> dict[str, dict[str, Any]]:
    return {r["row_id"]: r for r in pq.read_table(out / "ledger.parquet").to_pylist()}


def stats(app: EmulatorApp) -> dict[str, Any]:
    return dict(app.stats_snapshot())


def report(config: Any, app: EmulatorApp) -> tuple[int, str]:
    """Run as the command does; the exit code and everything it printed."""
    said: list[str] = []
    code = run_and_report(config, EmulatorTransport(app), argv=[], out=said.append, err=said.append)
    return code, "\n".join(said)


def test_tokens_that_expire_every_few_seconds_fail_no_row_and_never_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    adc_env(monkeypatch, tmp_path, service_account(tmp_path / "sa.json"))
    clock = VirtualClock()
    app = vertex_emulator(
        clock=clock.monotonic, token_ttl_s=3, latency=parse_latency("uniform:0.5-1.5")
    )
    manifest = write_csv(tmp_path / "m.csv", rows(40))
    out = tmp_path / "out"
    config = vertex_config(manifest, out, clock=clock)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with capture_logs() as logs:
            code, printed = report(config, app)
    finally:
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    assert code == 0, printed
    assert {r["status"] for r in ledger(out).values()} == {"succeeded"}
    counters = stats(app)
    assert counters["tokens_issued"] >= 5  # ~10 s of virtual time, a token every 1.5 s
    assert counters["billed"] == 40
    assert counters["billed_duplicates"] == 0
    assert TOKEN_PREFIX not in printed
    assert TOKEN_PREFIX not in repr(logs)
    assert outputs_holding(out, TOKEN_PREFIX) == []


async def test_a_revoked_token_is_refreshed_once_for_every_worker(
    tmp_path: Path, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    adc_env(monkeypatch, tmp_path, service_account(tmp_path / "sa.json"))
    app = vertex_emulator(clock=clock.monotonic, latency=parse_latency("1"))
    manifest = write_csv(tmp_path / "m.csv", rows(24))
    config = vertex_config(manifest, tmp_path / "out", clock=clock)

    async def revoke_mid_run(_: RunResult) -> None:
        await clock.sleep(3.5)
        async with httpx.AsyncClient(transport=EmulatorTransport(app)) as admin:
            await admin.post(f"{EMULATOR}/_emulator/expire-tokens")

    result = await run_manifest(config, EmulatorTransport(app), [revoke_mid_run])
    assert result.by_status == {"succeeded": 24}
    counters = stats(app)
    assert counters["by_status"].get("401", 0) >= 1  # the revoked token was met...
    assert counters["tokens_issued"] == 2  # ...and replaced once: the first token, one more
    assert counters["billed_duplicates"] == 0


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"project": "nope"}, "may not use Vertex AI in project nope at global"),
        ({"location": "us-central1"}, "try --location global"),
        ({"model": "gemini-3-pro-image-preview"}, "check --model"),
    ],
)
def test_a_wrong_project_location_or_model_stops_before_anything_is_billed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overrides: dict[str, Any], words: str
) -> None:
    adc_env(monkeypatch, tmp_path, service_account(tmp_path / "sa.json"))
    app = vertex_emulator()
    out = tmp_path / "out"
    config = vertex_config(write_csv(tmp_path / "m.csv", rows(5)), out, **overrides)
    code, printed = report(config, app)
    assert code == 2
    assert words in printed
    assert len(printed.splitlines()) == 1
    counters = stats(app)
    assert (counters["requests"], counters["billed"], counters["model_reads"]) == (0, 0, 1)
    assert not (out / "ledger.parquet").exists()


@pytest.mark.parametrize(
    ("key_file", "project", "words"),
    [
        ("missing.json", PROJECT, "missing.json (GOOGLE_APPLICATION_CREDENTIALS) cannot be used"),
        ("sa.json", None, "pass --project P or set GOOGLE_CLOUD_PROJECT"),
    ],
)
def test_credentials_or_a_project_not_found_stop_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key_file: str, project: str | None, words: str
) -> None:
    service_account(tmp_path / "sa.json", project_id=None)  # a key naming no project
    adc_env(monkeypatch, tmp_path, tmp_path / key_file)
    app = vertex_emulator()
    config = vertex_config(write_csv(tmp_path / "m.csv", rows(3)), tmp_path / "o", project=project)
    code, printed = report(config, app)
    assert (code, len(printed.splitlines())) == (2, 1)
    assert words in printed
    assert (stats(app)["requests"], stats(app)["model_reads"]) == (0, 0)


async def test_the_project_comes_from_the_credentials_when_not_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    adc_env(monkeypatch, tmp_path, service_account(tmp_path / "sa.json"))
    app = vertex_emulator()
    config = vertex_config(write_csv(tmp_path / "m.csv", rows(3)), tmp_path / "o", project=None)
    result = await run_manifest(config, EmulatorTransport(app))
    assert result.by_status == {"succeeded": 3}
    assert stats(app)["by_route"]["vertex"]["billed"] == 3


async def test_the_metadata_server_gives_the_token_and_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    adc_env(monkeypatch, tmp_path, None)
    host = EMULATOR.removeprefix("http://")
    monkeypatch.setenv("GCE_METADATA_HOST", host)
    monkeypatch.setenv("GCE_METADATA_IP", host)
    app = vertex_emulator()  # its metadata server names the first of --vertex-projects
    config = vertex_config(write_csv(tmp_path / "m.csv", rows(3)), tmp_path / "o", project=None)
    result = await run_manifest(config, EmulatorTransport(app))
    assert result.by_status == {"succeeded": 3}
    assert stats(app)["tokens_issued"] == 1


async def _issued_without_scope(client: httpx.AsyncClient) -> str:
    form = {
        "grant_type": "refresh_token",
        "client_id": "c",
        "client_secret": "s",
        "refresh_token": "1//r",
        "scope": "https://www.googleapis.com/auth/devstorage.read_only",
    }
    answer = await client.post(f"{EMULATOR}/token", data=form)
    token = answer.json()["access_token"]
    assert isinstance(token, str)
    return token


async def test_a_token_without_the_cloud_platform_scope_stops_the_run_at_the_check() -> None:
    app = vertex_emulator()
    async with httpx.AsyncClient(transport=EmulatorTransport(app)) as http:
        token = await _issued_without_scope(http)
        auth = TokenAuth(lambda: Token(token, None), source="a narrow credential")
        route = VertexRoute("global", PROJECT, base_url=EMULATOR)
        provider = VertexProvider(route=route, auth=auth, model=GA)
        client = HttpClient(new_http_client(EmulatorTransport(app), 1))
        with pytest.raises(UsageError, match="a narrow credential lacks the cloud-platform scope"):
            await provider.preflight(client)
    assert (stats(app)["requests"], stats(app)["model_reads"]) == (0, 1)


@pytest.mark.parametrize(("key", "code"), [("key-right-1234", 0), ("key-wrong-5678", 2)])
def test_express_mode_sends_the_key_and_a_wrong_one_stops_at_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, code: int
) -> None:
    adc_env(monkeypatch, tmp_path, None)
    app = vertex_emulator(api_key="key-right-1234")
    config = vertex_config(
        write_csv(tmp_path / "m.csv", rows(3)),
        tmp_path / "o",
        project=None,
        api_key=ApiKey(key, "--api-key"),
    )
    exit_code, printed = report(config, app)
    assert exit_code == code, printed
    if code:
        assert "Vertex AI rejected the key from --api-key (express mode)" in printed
        assert stats(app)["requests"] == 0
    else:
        assert stats(app)["by_route"]["vertex-express"]["billed"] == 3
    assert key not in printed


async def test_model_armor_and_error_arrays_under_faults_cost_what_vertex_bills(
    tmp_path: Path, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    adc_env(monkeypatch, tmp_path, service_account(tmp_path / "sa.json"))
    app = vertex_emulator(
        clock=clock.monotonic,
        faults=parse_faults("429=0.15,503=0.1,500=0.05,unsafe=0.05,retry_delay=2"),
        error_array=1.0,  # every error as a JSON array
        seed=5,
    )
    manifest = write_csv(tmp_path / "m.csv", rows(40, "#armor a", "#armorout b"))
    out = tmp_path / "out"
    result = await run_manifest(vertex_config(manifest, out, clock=clock), EmulatorTransport(app))
    recorded = ledger(out)
    assert set(result.by_status) <= {"succeeded", "refused"}
    assert recorded["r040"]["status"] == recorded["r041"]["status"] == "refused"
    assert recorded["r040"]["reason"] == "PROMPT_BLOCKED:MODEL_ARMOR"
    assert recorded["r041"]["reason"] == "MODEL_ARMOR"
    assert recorded["r040"]["cost_usd"] == pytest.approx(0.067)  # billed as a generation
    counters = stats(app)
    assert counters["faults"]["armor"] == 2
    assert counters["early_retries"] == counters["billed_duplicates"] == 0
    spent = sum(r["cost_usd"] for r in recorded.values())
    assert spent == pytest.approx(counters["billed_usd"])


async def test_flex_travels_in_the_headers_and_the_answer_says_flex_served_it(
    tmp_path: Path, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    adc_env(monkeypatch, tmp_path, service_account(tmp_path / "sa.json"))
    app = vertex_emulator(clock=clock.monotonic, flex_latency=parse_latency("uniform:60-120"))
    out = tmp_path / "out"
    manifest = write_csv(tmp_path / "m.csv", rows(6))
    config = vertex_config(manifest, out, clock=clock, model=GA, tier=Tier.FLEX)
    result = await run_manifest(config, EmulatorTransport(app))
    assert result.by_status == {"succeeded": 6}
    assert stats(app)["by_tier"]["flex"]["billed"] == 6
    recorded = ledger(out).values()
    assert {(r["tier"], r["tier_reported"]) for r in recorded} == {("flex", True)}
    assert sum(r["cost_usd"] for r in recorded) == pytest.approx(stats(app)["billed_usd"])


def test_the_command_with_a_key_file_whose_tokens_expire_mid_run(tmp_path: Path) -> None:
    # Tokens live 0.6 s and are renewed at half their life; 30 rows, 4 at a time, are eight
    # rounds of 50-100 ms: the last starts 0.35 s after the first token at the least, so the
    # run needs another. (Short rather than virtual: google-auth reads the real clock, and so
    # does the emulator on a port.)
    config = EmulatorConfig(
        payload=Payload.COMPACT,
        bearer="issued",
        token_ttl_s=0.6,
        vertex_projects=frozenset({PROJECT}),
        latency=parse_latency("uniform:0.05-0.1"),
    )
    out = tmp_path / "out"
    manifest = write_csv(tmp_path / "m.csv", rows(30))
    with BackgroundEmulator(config) as server:
        key_file = service_account(tmp_path / "sa.json", token_uri=f"{server.base_url}/token")
        env: dict[str, str | None] = {
            k: None for k in os.environ if k.startswith(("GOOGLE_", "GEMINI_"))
        }
        env |= {"GOOGLE_APPLICATION_CREDENTIALS": str(key_file),
                "CLOUDSDK_CONFIG": str(tmp_path / "no-gcloud")}  # fmt: skip
        done = nanobatch("run", str(manifest), "--out", str(out), "--provider", "vertex",
                         "--project", PROJECT, "--base-url", server.base_url, "--concurrency",
                         "4", "-vv", env=env)  # fmt: skip
        counters = stats(server.app)
    assert done.returncode == 0, done.stderr
    assert {r["status"] for r in ledger(out).values()} == {"succeeded"}
    assert counters["tokens_issued"] >= 2
    assert counters["billed_duplicates"] == 0
    assert TOKEN_PREFIX not in done.stdout + done.stderr
    assert (out / "run.log").stat().st_size > 0  # every event, debug included
    assert outputs_holding(out, TOKEN_PREFIX) == []
