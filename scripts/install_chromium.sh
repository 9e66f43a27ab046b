#!/usr/bin/env bash
# Install Debian's chromium for the contact-sheet test, when it is missing and we can.
# Never fails: without it the browser test is skipped with a clear reason.
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium not installed and cannot install it here (needs root and apt-get): the report's browser test will be skipped" >&2
  exit 0
fi
echo "installing chromium (for the report's browser test)" >&2
{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
  || echo "chromium could not be installed: the report's browser test will be skipped" >&2
exit 0
