"""The real command line against the emulator on a loopback port: exit codes and outputs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.emulator import BackgroundEmulator, EmulatorConfig, Payload, parse_faults
from tests.helpers import TEST_KEY, write_csv


def nanobatch(*args: str, key: str | None = TEST_KEY) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
    if key is not None:
        env["GEMINI_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundEmulator]:
    config = EmulatorConfig(api_key=TEST_KEY, payload=Payload.COMPACT)
    with BackgroundEmulator(config) as emulator:
        yield emulator


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    rows = [{"id": f"r{i}", "prompt": f"a lamp {i}"} for i in range(12)]
    rows.append({"id": "nope", "prompt": "a thing #unsafe"})
    return write_csv(tmp_path / "m.csv", rows)


def test_run_writes_ledger_and_images_and_resumes(
    server: BackgroundEmulator, manifest: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = nanobatch("run", str(manifest), "--out", str(out), "--base-url", server.base_url)
    assert first.returncode == 0, first.stderr
    table = pq.read_table(out / "ledger.parquet")
    assert table.num_rows == 13
    assert len(list((out / "images").iterdir())) == 12
    assert "succeeded" in first.stdout

    before = server.app.stats_snapshot()["requests"]
    second = nanobatch("run", str(manifest), "--out", str(out), "--base-url", server.base_url)
    assert second.returncode == 0, second.stderr
    assert server.app.stats_snapshot()["requests"] == before
    assert pq.read_table(out / "ledger.parquet").num_rows == 13


def test_missing_key_is_a_usage_error_and_sends_nothing(
    server: BackgroundEmulator, manifest: Path, tmp_path: Path
) -> None:
    before = server.app.stats_snapshot()["requests"]
    result = nanobatch("run", str(manifest), "--out", str(tmp_path / "o"), "--base-url",
                       server.base_url, key=None)  # fmt: skip
    assert result.returncode == 2
    assert "GEMINI_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr
    assert server.app.stats_snapshot()["requests"] == before


def test_wrong_key_stops_with_exit_3_naming_the_source_not_the_key(
    server: BackgroundEmulator, manifest: Path, tmp_path: Path
) -> None:
    result = nanobatch("run", str(manifest), "--out", str(tmp_path / "o"), "--base-url",
                       server.base_url, "--concurrency", "2", key="wrong-key-abcdef")  # fmt: skip
    assert result.returncode == 3
    assert "GEMINI_API_KEY" in result.stderr
    assert "wrong-key-abcdef" not in result.stderr + result.stdout


def test_failed_rows_exit_1(manifest: Path, tmp_path: Path) -> None:
    config = EmulatorConfig(faults=parse_faults("500=1.0"), payload=Payload.COMPACT)
    with BackgroundEmulator(config) as broken:
        result = nanobatch("run", str(manifest), "--out", str(tmp_path / "o"), "--base-url",
                           broken.base_url, "--max-attempts", "1")  # fmt: skip
    assert result.returncode == 1
    statuses = set(pq.read_table(tmp_path / "o" / "ledger.parquet")["status"].to_pylist())
    assert statuses == {"failed"}  # faults are drawn before refusal tokens


def test_bad_manifest_exits_2_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "m.csv"
    bad.write_text("id,text\n1,x\n")
    result = nanobatch("run", str(bad), "--out", str(tmp_path / "o"), "--emulate")
    assert result.returncode == 2
    assert "prompt" in result.stderr
    assert "Traceback" not in result.stderr


def test_duplicate_ids_exit_2_before_any_request(tmp_path: Path) -> None:
    dup = write_csv(tmp_path / "m.csv", [{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}])
    result = nanobatch("run", str(dup), "--out", str(tmp_path / "o"), "--emulate")
    assert result.returncode == 2
    assert "duplicate" in result.stderr
    assert not (tmp_path / "o" / "images").exists() or not any(
        (tmp_path / "o" / "images").iterdir()
    )


def test_emulate_needs_no_key(manifest: Path, tmp_path: Path) -> None:
    result = nanobatch("run", str(manifest), "--out", str(tmp_path / "o"), "--emulate", key=None)
    assert result.returncode == 0, result.stderr
    assert pq.read_table(tmp_path / "o" / "ledger.parquet").num_rows == 13
