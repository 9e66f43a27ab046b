"""``scripts/durable_client.py``, the benchmark's crash-safe reference client: it must do the
work it is quoted for (every image written whole, its record naming its bytes), or the bench
would compare nanobatch with a client that skips some of it."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from pipeline.emulator import BackgroundEmulator, EmulatorConfig
from tests.helpers import TEST_KEY, write_csv

SCRIPT = Path(__file__).parent.parent / "scripts" / "durable_client.py"


def run_client(
    tmp_path: Path, rows: int, config: EmulatorConfig
) -> subprocess.CompletedProcess[bytes]:
    lines = [{"id": f"r{i}", "prompt": f"a red mug, take {i}"} for i in range(rows)]
    manifest = write_csv(tmp_path / "m.csv", lines)
    with BackgroundEmulator(config) as emu:
        argv = [sys.executable, str(SCRIPT), str(manifest), "--out", str(tmp_path / "out")]
        argv += ["--base-url", emu.base_url, "--concurrency", "2", "--image-size", "512"]
        env = {"GEMINI_API_KEY": TEST_KEY, "PATH": ""}
        return subprocess.run(argv, capture_output=True, env=env, timeout=60, check=False)


def test_every_image_is_written_and_recorded_with_its_digest(tmp_path: Path) -> None:
    done = run_client(tmp_path, 5, EmulatorConfig())
    out = tmp_path / "out"
    assert done.returncode == 0, done.stderr.decode()
    records = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    assert sorted(r["row_id"] for r in records) == [f"r{i}" for i in range(5)]
    for record in records:
        data = (out / "images" / record["file"]).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert hashlib.sha256(data).hexdigest() == record["sha256"]
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(r["file"] for r in records)


def test_rows_without_an_image_fail_the_run_and_record_nothing(tmp_path: Path) -> None:
    done = run_client(tmp_path, 3, EmulatorConfig(api_key="another-key"))  # every answer a 4xx
    assert done.returncode == 1
    assert (tmp_path / "out" / "journal.jsonl").read_bytes() == b""
    assert list((tmp_path / "out" / "images").iterdir()) == []
