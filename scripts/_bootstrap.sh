# Sourced by scripts/demo, scripts/test and scripts/bench: make sure uv exists, then sync
# the locked environment. Needs only python3 (>= 3.11) with pip; never downloads a Python.
# Afterwards "${UV[@]}" is the uv command to use.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export UV_PYTHON_DOWNLOADS=never
# Trust the operating system's certificate store, as pip does: behind a proxy with its own CA
# (common in companies) uv's built-in roots would refuse the package index.
export UV_SYSTEM_CERTS="${UV_SYSTEM_CERTS:-1}"
export PATH="$HOME/.local/bin:/usr/local/bin:$PATH"
if command -v uv >/dev/null 2>&1; then
  UV=(uv)
else
  echo "installing uv (not found on PATH)" >&2
  # --user where allowed; Debian-style "externally managed" Pythons need the explicit flag.
  python3 -m pip install --quiet --user uv 2>/dev/null \
    || python3 -m pip install --quiet --user --break-system-packages uv 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages uv
  if command -v uv >/dev/null 2>&1; then UV=(uv); else UV=(python3 -m uv); fi
fi
"${UV[@]}" sync --locked --quiet
