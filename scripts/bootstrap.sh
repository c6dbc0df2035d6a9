#!/usr/bin/env bash
# Installs what Vessel needs on Debian 12 (idempotent, fast when already there)
# and builds it into ./build. Usage: scripts/bootstrap.sh [--test-deps]
set -euo pipefail
cd "$(dirname "$0")/.."

runtime_pkgs=(
  meson ninja-build pkg-config g++ python3
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools
  libsoup-3.0-dev libpqxx-dev libcurl4-openssl-dev libssl-dev
  libboost-dev libboost-filesystem-dev libtomlplusplus-dev nlohmann-json3-dev
  postgresql postgresql-client
)
test_pkgs=(libgtest-dev libgmock-dev ffmpeg clang-format)

want=("${runtime_pkgs[@]}")
if [[ "${1:-}" == "--test-deps" ]]; then want+=("${test_pkgs[@]}"); fi
# ffmpeg is also handy for the quick start's demo input.
want+=(ffmpeg)

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "bootstrap: missing packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
  fi
  echo "bootstrap: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ! -f build/build.ninja ]]; then
  meson setup build --buildtype=debugoptimized >/dev/null
fi
ninja -C build >/dev/null
echo "bootstrap: built $(pwd)/build/server/vessel" >&2
