#!/usr/bin/env bash
# The browser of the memory browser's tests (tests/test_ui.py): Debian's chromium and its
# chromedriver, from apt. Idempotent: does nothing when both are installed. Needs root (or sudo)
# only when something is missing. No browser is ever downloaded at test time.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "provision-browser: no apt-get; install chromium and chromedriver as /usr/bin/chromium and /usr/bin/chromedriver" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# refresh the package lists only when apt does not know the packages yet
if ! apt-cache show chromium chromium-driver >/dev/null 2>&1; then
  $sudo apt-get update -qq
fi
$sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
/usr/bin/chromium --version
