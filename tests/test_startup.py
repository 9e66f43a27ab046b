"""What importing the command line loads: ``nanobatch --help`` and argument parsing must not wait
for the Parquet engine, the HTTP stack, the emulator, the progress bar or Pillow, and a run
must not load what only the report, the contact sheet or the emulator need. Each check runs in
a fresh interpreter and reads ``sys.modules``: a behaviour, not a timing."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import TEST_KEY, slow_emulator, write_csv

# Packages (and our own modules) a command loads in its body when it needs them.
HEAVY = ("pyarrow", "httpx", "httpx2", "aiohttp", "pipeline.emulator", "rich", "PIL", "structlog")


def loaded_after(*modules: str) -> set[str]:
    """The modules and packages in ``sys.modules`` after a fresh interpreter imports ``modules``."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    importlib.import_module(name)\n"
        # None blocks an import (pipeline.cli's, for httpx's CLI): nothing was loaded.
        "real = [n for n, m in sys.modules.items() if m is not None]\n"
        "print(json.dumps(sorted(real)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return set(json.loads(done.stdout))


def present(loaded: set[str], names: tuple[str, ...]) -> list[str]:
    return [name for name in names if any(m == name or m.startswith(name + ".") for m in loaded)]


def test_importing_the_cli_loads_no_heavy_dependency() -> None:
    assert present(loaded_after("pipeline.cli.app"), HEAVY) == []


def test_a_run_does_not_load_the_report_the_emulator_or_the_progress_bar() -> None:
    loaded = loaded_after("pipeline.cli.app", "pipeline.commands.run")
    unneeded = (
        "pipeline.commands.report",
        "pipeline.commands.report_html",
        "pipeline.commands.thumbs",
        "pipeline.commands.verify",
        "pipeline.emulator",
        "PIL",
    )
    # Not rich: the live bar loads it only on a terminal, but httpx 0.28 imports it for its
    # own command-line tool, so whether a run loads it is the HTTP stack's choice.
    assert present(loaded, unneeded) == []


def test_a_run_does_not_load_httpx_s_command_line_tool() -> None:
    # httpx imports its CLI (click, rich.progress, rich.syntax, pygments) whenever they can be
    # imported: ~25 ms of every command's start-up; pipeline.cli blocks that one import.
    loaded = loaded_after("pipeline.cli.app", "pipeline.commands.run", "httpx")
    assert importlib.util.find_spec("click") is not None  # else this test would prove nothing
    assert present(loaded, ("click",)) == []
    assert "httpx" in loaded


def test_a_run_over_http_never_loads_aiohttp(tmp_path: Path) -> None:
    """API calls go out on ``wire``: aiohttp (~0.17 s of start-up) is for proxies, uploads,
    downloads and links. Read from the interpreter's own import trace of a real run."""
    manifest = write_csv(
        tmp_path / "m.csv", [{"id": f"r{n}", "prompt": "a lamp"} for n in range(3)]
    )
    with slow_emulator("0") as server:
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "pipeline", "run", str(manifest),
             "--out", str(tmp_path / "out"), "--base-url", server.base_url],
            env={**os.environ, "GEMINI_API_KEY": TEST_KEY},
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert "pipeline.providers.wire" in imported  # else this test would prove nothing
    assert present(imported, ("aiohttp", "pipeline.providers.aiosession")) == []
