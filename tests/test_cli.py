"""The real command line (in this process) against the emulator on a loopback port: exit codes
and outputs."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.core.config import RunConfig
from pipeline.emulator import BackgroundEmulator, EmulatorConfig, Payload, parse_faults
from pipeline.plan.checkpass import check_manifest
from pipeline.plan.done import DoneRows
from pipeline.plan.sources import MAX_IMAGE_BYTES, MAX_IMAGE_MIB, MAX_REQUEST_INLINE_MIB
from tests.commandline import Ran
from tests.commandline import nanobatch as run_command
from tests.helpers import TEST_KEY, write_csv


def nanobatch(*args: str, key: str | None = TEST_KEY) -> Ran:
    return run_command(*args, key=key)


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


def test_retry_refused_resends_the_refused_rows_of_an_earlier_run(
    server: BackgroundEmulator, manifest: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ("run", str(manifest), "--out", str(out), "--base-url", server.base_url)
    assert nanobatch(*args).returncode == 0
    before = server.app.stats_snapshot()["requests"]
    assert isinstance(before, int)
    again = nanobatch(*args, "--retry-refused")
    assert again.returncode == 0, again.stderr
    assert server.app.stats_snapshot()["requests"] == before + 1  # the one refused row, once
    rows = pq.read_table(out / "ledger.parquet").to_pylist()
    assert [r["status"] for r in rows if r["row_id"] == "nope"] == ["refused"]


@pytest.mark.parametrize("kind", ["a file", "under a file", "unwritable", "impossible"])
def test_a_bad_out_is_one_line_and_exit_2(kind: str, manifest: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("x")
    out = {"a file": blocker, "under a file": blocker / "sub", "unwritable": Path("/proc/self"),
           "impossible": Path("/proc/nb")}  # fmt: skip
    result = nanobatch("run", str(manifest), "--out", str(out[kind]), "--emulate")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert str(out[kind]) in result.stderr
    assert blocker.read_text() == "x"


def test_invalid_rows_make_exit_1_even_when_every_row_is_invalid(tmp_path: Path) -> None:
    bad = {"id": "bad", "prompt": "x", "images": "gone.png"}
    some = write_csv(tmp_path / "some.csv", [{"id": "ok", "prompt": "a lamp"}, bad])
    every = write_csv(tmp_path / "every.csv", [bad])
    for manifest in (some, every):
        out = tmp_path / manifest.stem
        result = nanobatch("run", str(manifest), "--out", str(out), "--emulate")
        assert result.returncode == 1, result.stderr
        rows = pq.read_table(out / "ledger.parquet").to_pylist()
        assert {r["row_id"]: r["status"] for r in rows}["bad"] == "invalid"


def test_limit_says_how_many_rows_remain(manifest: Path, tmp_path: Path) -> None:
    result = nanobatch("run", str(manifest), "--out", str(tmp_path / "o"), "--emulate",
                       "--limit", "5")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "8 rows of the manifest remain" in result.stderr


def test_unknown_ids_are_counted_and_named(manifest: Path, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("r1\nR2\nnot-a-row\n")
    config = RunConfig(manifest=manifest, out_dir=tmp_path, ids_file=ids)
    scan = check_manifest(config, DoneRows(pa.array([], pa.string())))
    assert (scan.to_do, scan.unknown_ids) == (1, ("R2", "not-a-row"))
    result = nanobatch("validate", str(manifest), "--ids", str(ids))
    assert result.returncode == 0, result.stderr
    assert "not-a-row" in result.stderr  # a warning, not a silent skip


def test_daily_quota_stop_exits_3_without_googles_retry_in_seconds(tmp_path: Path) -> None:
    daily = write_csv(tmp_path / "m.csv", [{"id": "q", "prompt": "a lamp #429day"}])
    result = nanobatch("run", str(daily), "--out", str(tmp_path / "o"), "--emulate")
    assert result.returncode == 3, result.stderr
    assert "midnight Pacific" in result.stderr
    assert "retry in" not in result.stderr.lower()  # true of a minute's window, not a day's
    assert ".." not in result.stderr


README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


def test_run_help_names_manifest_and_out_every_rerun_form_and_fits_80_columns() -> None:
    result = CliRunner().invoke(
        app, ["run", "--help"], env={"COLUMNS": "80"}, prog_name="nanobatch"
    )
    assert result.exit_code == 0
    assert "nanobatch run --out DIR [OPTIONS] {MANIFEST}" in result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80
    rerun = " ".join(result.output.split("--rerun WHAT", 1)[1].split("[default")[0].split())
    for form in ("failed", "refused", "succeeded", "all", "none", "failed,refused"):
        assert form in rerun
    assert "-v, --verbose" in result.output
    assert "-vv" in result.output
    assert "(billed)" not in result.output


def test_help_and_readme_give_the_same_latency_syntax_and_size_limits() -> None:
    emulator = CliRunner().invoke(app, ["emulator", "--help"], env={"COLUMNS": "80"}).output
    for form in ("uniform:LOW-HIGH", "lognormal:MEAN[:SIGMA]", "@size"):
        assert form in " ".join(emulator.split())
        assert form in README
    run = " ".join(CliRunner().invoke(app, ["run", "--help"]).output.split())
    assert f"{MAX_IMAGE_MIB} MiB" in run
    assert f"at most {MAX_IMAGE_MIB} MiB each" in README
    assert f"{MAX_REQUEST_INLINE_MIB} MiB of base64 per request" in README
    assert MAX_IMAGE_BYTES == MAX_IMAGE_MIB * 2**20


def test_scripts_nanobatch_works_without_uv_on_path(tmp_path: Path) -> None:
    script = Path(__file__).parent.parent / "scripts" / "nanobatch"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no ~/.local/bin, no uv
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "validate" in result.stdout
    assert "scripts/nanobatch" in README.split("## Quick start", 1)[1].split("###", 1)[0]
    assert "uv run nanobatch" not in README


def test_the_command_list_fits_80_columns_without_cut_sentences() -> None:
    shown = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "80"}, prog_name="nanobatch")
    listing = shown.output.split("Commands:", 1)[1]
    assert "status" in listing
    assert "..." not in listing  # every command's summary whole
    assert max(len(line) for line in shown.output.splitlines()) <= 80
