#!/usr/bin/env bash
# The headless browser of tests/test_review_page.py: Debian's chromium,
# installed when it is missing (as root, or with sudo). Nothing happens where
# a chromium is already on PATH.
set -euo pipefail
if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y -q --no-install-recommends chromium >/dev/null \
  || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q --no-install-recommends chromium >/dev/null; }
command -v chromium >/dev/null
