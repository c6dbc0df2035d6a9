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
  libboost-dev libboost-filesystem-dev libtomlplusplus-dev nlohmann-json3-dev zlib1g-dev
  postgresql postgresql-client
)
test_pkgs=(libgtest-dev libgmock-dev ffmpeg clang-format chromium clang libclang-rt-dev)
# The S3 tests' SigV4-verifying front (tests/s3/front.py) judges with Debian's botocore.
test_pkgs+=(python3-botocore)

want=("${runtime_pkgs[@]}")
if [[ "${1:-}" == "--test-deps" ]]; then want+=("${test_pkgs[@]}"); fi
# ffmpeg is also handy for the quick start's demo input.
want+=(ffmpeg)
# The web app's build takes hls.js from npm. NodeSource's nodejs bundles npm;
# Debian's is a package of its own.
command -v node >/dev/null || want+=(nodejs)
command -v npm >/dev/null || want+=(npm)

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

# node_modules from package-lock.json (hls.js for the web app, playwright-core
# for tests/browser, s3rver for the S3 test server in tests/s3); skipped while
# npm's own record of it is newer than the lock.
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ||
      package.json -nt node_modules/.package-lock.json ]]; then
  echo "bootstrap: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi

if [[ ! -f build/build.ninja ]]; then
  meson setup build --buildtype=debugoptimized >/dev/null
fi
ninja -C build >/dev/null
echo "bootstrap: built $(pwd)/build/server/vessel" >&2
