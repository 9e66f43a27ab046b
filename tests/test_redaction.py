"""The API key never appears in any output: stdout, stderr, logs, ledgers, status, reports."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.emulator import BackgroundEmulator, EmulatorConfig, Payload, parse_faults
from tests.commandline import Ran
from tests.commandline import nanobatch as run_command
from tests.helpers import write_csv

KEY = "AIzaSyFAKE-nanobatch-redaction-probe-0042"
FAULTS = "429=0.2,500=0.1,503=0.1,reset=0.05,truncate=0.05,unsafe=0.1,retry_delay=0.05"


def nanobatch(*args: str, env_key: str | None = None) -> Ran:
    return run_command(*args, key=env_key)


def files_containing(root: Path, needle: str) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        if path.suffix == ".parquet":  # compressed: look at the decoded values
            text = str(pq.read_table(path).to_pylist())
        else:
            text = path.read_bytes().decode("utf-8", errors="replace")
        if needle in text:
            found.append(str(path))
    return found


def test_the_key_appears_in_no_output_whatever_happens(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    rows = [{"id": f"r{i}", "prompt": f"p {i}" + (" #block" if i == 3 else "")} for i in range(30)]
    manifest = write_csv(tmp_path / "m.csv", rows)
    out = tmp_path / "out"
    faulty = EmulatorConfig(api_key=KEY, faults=parse_faults(FAULTS), payload=Payload.COMPACT,
                            seed=9)  # fmt: skip
    resets = EmulatorConfig(api_key=KEY, faults=parse_faults("reset=1.0"), payload=Payload.COMPACT)
    fast = ["--backoff-base", "0.01", "-vv"]
    with BackgroundEmulator(faulty) as server, BackgroundEmulator(resets) as broken:
        url = server.base_url
        runs = [
            # Every row fails on a dropped connection, with the key in the URL: the error
            # messages that reach the ledger must not carry it.
            nanobatch("run", str(manifest), "--out", str(tmp_path / "resets"), "--base-url",
                      broken.base_url, "--api-key", KEY, "--auth", "query", "--max-attempts", "1",
                      "--limit", "5", *fast),
            nanobatch("run", str(manifest), "--out", str(out), "--base-url", url, "--api-key",
                      KEY, "--auth", "query", "--limit", "10", "--max-attempts", "2", *fast),
            nanobatch("run", str(manifest), "--out", str(out), "--base-url", url, "--auth",
                      "bearer", "--limit", "20", *fast, env_key=KEY),
            nanobatch("run", str(manifest), "--out", str(out), "--base-url", url, *fast,
                      env_key=KEY),
            nanobatch("run", str(manifest), "--out", str(tmp_path / "wrong"), "--base-url", url,
                      *fast, env_key=KEY[:-1] + "9"),
            nanobatch("verify", str(out)),
            # The newer read-outs of a folder, on the finished job and on the stopped one.
            nanobatch("status", str(out), "--format", "json"),
            nanobatch("status", str(tmp_path / "wrong"), "--format", "json"),
            nanobatch("status", str(tmp_path / "wrong")),
            nanobatch("validate", str(manifest), "--out", str(out)),
            nanobatch("report", str(out)),
        ]  # fmt: skip
    outputs: list[str] = []
    for result in runs:
        outputs += [result.stdout, result.stderr]
    outputs += capfd.readouterr()  # anything written past sys.stdout/sys.stderr, to the fds
    assert runs[0].returncode == 1  # every row failed: their errors are in the ledger
    assert runs[3].returncode in (0, 1), runs[3].stderr
    assert runs[4].returncode == 3  # the wrong key stopped the run
    assert [r.returncode for r in runs[6:]] == [0] * 5, [r.stderr for r in runs[6:]]
    assert (out / "ids.json").exists()
    assert (out / "run.log").stat().st_size > 0
    assert (out / "status.json").exists()
    assert [o for o in outputs if KEY in o or KEY[:-1] + "9" in o] == []
    assert files_containing(tmp_path, KEY) == []
    assert files_containing(tmp_path, KEY[:-1] + "9") == []


def test_a_key_inside_a_logged_object_is_redacted_too(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Events may carry objects, not only strings (an exception, a URL): what they print as is
    cleaned like a string, in run.log and on the console."""
    import httpx
    import structlog

    from pipeline.core import logs

    logs.setup(2, [KEY], tmp_path)
    try:
        structlog.get_logger("nanobatch").warning(
            "probe",
            url=httpx.URL(f"https://example.invalid/v1?key={KEY}"),
            error=ValueError(f"refused {KEY}"),
            nested=[ValueError(KEY)],
        )
    finally:
        structlog.reset_defaults()
    captured = capfd.readouterr()
    assert "probe" in (tmp_path / "run.log").read_text()
    assert files_containing(tmp_path, KEY) == []
    assert KEY not in captured.out + captured.err
