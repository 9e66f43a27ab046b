# Sourced by scripts/demo, scripts/test and scripts/bench: make sure uv exists, then sync
# the locked environment. Needs only python3 with pip; never downloads a Python build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export UV_PYTHON_DOWNLOADS=never
# Trust the operating system's certificate store, as pip does: behind a proxy with its own CA
# (common in companies) uv's built-in roots would refuse the package index.
export UV_NATIVE_TLS="${UV_NATIVE_TLS:-1}"
export PATH="$HOME/.local/bin:$PATH"
if ! command -v uv >/dev/null 2>&1; then
  echo "installing uv (not found on PATH)" >&2
  python3 -m pip install --user --quiet uv 2>/dev/null \
    || python3 -m pip install --quiet uv 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages uv
  if ! command -v uv >/dev/null 2>&1; then
    uv() { python3 -m uv "$@"; }
  fi
fi
uv sync --locked --quiet
