#!/usr/bin/env bash
# torchcodec decodes through the system FFmpeg shared libraries; install them when missing.
set -euo pipefail
if command -v ffmpeg >/dev/null 2>&1 && ldconfig -p 2>/dev/null | grep -q libavcodec; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "FFmpeg is missing: install it (apt-get install ffmpeg) and rerun." >&2; exit 1; }
  sudo="sudo"
fi
echo "Installing FFmpeg (needed by torchcodec)..."
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null
