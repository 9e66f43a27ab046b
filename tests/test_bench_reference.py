"""``scripts/durable_client.py``, the benchmark's crash-safe reference client: it must do the
work it is quoted for (every image written whole, its record naming its bytes), or the bench
would compare nanobatch with a client that skips some of it."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from pipeline.emulator import BackgroundEmulator
from tests.helpers import TEST_KEY, write_csv

SCRIPT = Path(__file__).parent.parent / "scripts" / "durable_client.py"


def test_every_image_is_written_and_recorded_with_its_digest(tmp_path: Path) -> None:
    rows = [{"id": f"r{i}", "prompt": f"a red mug, take {i}"} for i in range(5)]
    manifest = write_csv(tmp_path / "m.csv", rows)
    out = tmp_path / "out"
    with BackgroundEmulator() as emu:
        argv = [sys.executable, str(SCRIPT), str(manifest), "--out", str(out)]
        argv += ["--base-url", emu.base_url, "--concurrency", "2", "--image-size", "512"]
        done = subprocess.run(
            argv,
            capture_output=True,
            env={"GEMINI_API_KEY": TEST_KEY, "PATH": ""},
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()
    records = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    assert sorted(r["row_id"] for r in records) == [f"r{i}" for i in range(5)]
    for record in records:
        data = (out / "images" / record["file"]).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert hashlib.sha256(data).hexdigest() == record["sha256"]
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(r["file"] for r in records)
