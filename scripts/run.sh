#!/usr/bin/env bash
# Quick start: install what is missing, build, and run Vessel on its embedded
# defaults — `vessel serve` with a private PostgreSQL cluster and local storage
# under ./var, on http://127.0.0.1:8080 (override with VESSEL_SERVER_LISTEN).
# With arguments it runs `vessel ARGS...` instead (e.g. scripts/run.sh transcode
# song.mp3 out/).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
if (($#)); then exec build/server/vessel "$@"; fi
mkdir -p var
chmod 755 var
exec build/server/vessel serve --data-dir var
