#!/usr/bin/env bash
# Quick start: install, build, and run Vessel. With no arguments it makes a
# 30-second demo track and transcodes it into ./var/demo-hls; otherwise it runs
# `vessel ARGS...` (e.g. scripts/run.sh transcode song.mp3 out/).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
if (($#)); then exec build/server/vessel "$@"; fi
mkdir -p var
if [[ ! -f var/demo.mp3 ]]; then
  ffmpeg -v error -y -f lavfi -i "sine=frequency=440:duration=30" -f lavfi \
    -i "anoisesrc=color=pink:duration=30:amplitude=0.05" \
    -filter_complex "[0][1]amix=inputs=2,aformat=channel_layouts=stereo" \
    -metadata title="Vessel demo" -c:a libmp3lame -b:a 192k var/demo.mp3
fi
rm -rf var/demo-hls
build/server/vessel plugins
build/server/vessel probe var/demo.mp3
build/server/vessel transcode var/demo.mp3 var/demo-hls
echo "master playlist: $(pwd)/var/demo-hls/master.m3u8"
