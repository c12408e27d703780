#!/usr/bin/env bash
# Install the Debian packages that are missing (apt-get; through sudo when not root).
#
#   ./scripts/install-debian-packages.sh chromium curl
#
# Used by run-tests.sh (Chromium and curl for the browser tests), take-screenshots.sh
# (Chromium) and make-demo-video.sh (ffmpeg and the caption font), so each of them installs
# what it needs on a fresh machine. Packages already installed are left alone.
set -euo pipefail

missing=()
for package in "$@"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

echo "==> Installing from Debian: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
