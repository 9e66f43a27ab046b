"""The baseline's interpreter: which Python runs ``scripts/baseline_sdk.py``, with which SDK setup.

- ``aiohttp`` (the default): an environment of its own with ``google-genai[aiohttp]``, the SDK's
  fastest documented setup. The SDK sends through aiohttp whenever aiohttp can be imported and
  no httpx transport or client was passed in (``BaseApiClient._use_aiohttp``), so installing
  the extra is all it takes. The project's environment cannot hold it: nanobatch's own choice
  of HTTP stack must not depend on what the baseline needs, nor the baseline on ours.
- ``plain``: the project's own environment, ``google-genai`` as installed there (no aiohttp,
  so the SDK's default httpx-style client).

The environment is built once with uv under a cache directory (``$NANOBATCH_BENCH_CACHE``, else
``$XDG_CACHE_HOME/nanobatch-bench``, else ``~/.cache/nanobatch-bench``), for the same
google-genai version as the project's lock, so the two setups differ in transport only. A
marker file written last says the build finished; an interrupted build is redone.
"""

from __future__ import annotations

import importlib.metadata
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from measure import progress

BASELINES = ("aiohttp", "plain")
_MARKER = ".nanobatch-bench-complete"


def cache_dir() -> Path:
    if explicit := os.environ.get("NANOBATCH_BENCH_CACHE"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nanobatch-bench"


def _uv() -> list[str]:
    """The uv command: the one ``scripts/bench`` bootstrapped, else uv on PATH."""
    if configured := os.environ.get("NANOBATCH_BENCH_UV"):
        return shlex.split(configured)
    for candidate in (shutil.which("uv"), str(Path.home() / ".local" / "bin" / "uv")):
        if candidate and Path(candidate).exists():
            return [candidate]
    return [sys.executable, "-m", "uv"]


def _base_python() -> str:
    """The interpreter the project's environment was made from (same version, same build)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidate = Path(sys.base_prefix) / "bin" / f"python{version}"
    return str(candidate) if candidate.exists() else version


def requirement() -> str:
    """What the aiohttp environment installs: the project's google-genai, with the extra."""
    return f"google-genai[aiohttp]=={importlib.metadata.version('google-genai')}"


def baseline_python(kind: str) -> Path:
    """The Python that runs the baseline for ``kind`` (see the module docstring)."""
    if kind == "plain":
        return Path(sys.executable)
    if kind != "aiohttp":
        raise ValueError(f"unknown baseline {kind!r}: use one of {', '.join(BASELINES)}")
    spec = requirement()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    env = cache_dir() / f"sdk-aiohttp-{spec.rpartition('==')[2]}-py{version}"
    python = env / "bin" / "python"
    marker = env / _MARKER
    if marker.exists() and marker.read_text(encoding="utf-8") == spec and python.exists():
        return python
    progress(f"    building the baseline's environment ({spec}) in {env}")
    shutil.rmtree(env, ignore_errors=True)
    env.parent.mkdir(parents=True, exist_ok=True)
    uv = _uv()
    # UV_PYTHON_DOWNLOADS=never (set by _bootstrap.sh) keeps uv to the interpreter named here.
    subprocess.run([*uv, "venv", "--quiet", "--python", _base_python(), str(env)], check=True)
    subprocess.run([*uv, "pip", "install", "--quiet", "--python", str(python), spec], check=True)
    marker.write_text(spec, encoding="utf-8")
    return python
