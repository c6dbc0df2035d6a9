#!/usr/bin/env bash
# Runs every test from nothing on a fresh Debian 12 machine (as root): installs
# packages (incl. chromium, python3-botocore, and node_modules by `npm ci`:
# hls.js, playwright-core, s3rver), builds, runs unit,
# integration and browser tests under `meson test`, checks formatting. Prints
# "N passed, N failed" last.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --test-deps
status=0
meson test -C build --print-errorlogs --num-processes 2 || status=$?
# The unit tests and the S3 plugin's tests against the S3 test server (suite s3:
# about a minute) again under AddressSanitizer + UndefinedBehaviorSanitizer.
# (LeakSanitizer is off: GStreamer and GLib keep process-lifetime allocations.)
if [[ "${VESSEL_SKIP_SANITIZERS:-0}" != "1" ]]; then
  if [[ ! -f build-asan/build.ninja ]]; then
    meson setup build-asan --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
  fi
  ninja -C build-asan >/dev/null
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    meson test -C build-asan --suite unit --suite s3 --print-errorlogs --num-processes 2 || status=$?
fi
# Every parser of untrusted input under libFuzzer (clang, ASan+UBSan), FUZZ_SECONDS
# (default 30) per target, two at a time; see tests/fuzz/run.sh.
if [[ "${VESSEL_SKIP_FUZZ:-0}" != "1" ]]; then
  tests/fuzz/run.sh --log build-fuzz/meson-logs/fuzzlog.json || status=$?
fi
# clang-format must be clean on our C++ sources.
fmt_bad=$(git ls-files '*.cpp' '*.hpp' 2>/dev/null | xargs -r clang-format --dry-run 2>&1 | grep -c "warning:" || true)
if [[ "$fmt_bad" != "0" ]]; then
  echo "clang-format: $fmt_bad formatting differences (run: git ls-files '*.cpp' '*.hpp' | xargs clang-format -i)" >&2
  status=1
fi
python3 - <<'PY'
import json
passed = failed = skipped = 0
for log in ("build/meson-logs/testlog.json", "build-asan/meson-logs/testlog.json",
            "build-fuzz/meson-logs/fuzzlog.json"):
    try:
        with open(log) as f:
            for line in f:
                res = json.loads(line).get("result")
                if res in ("OK", "EXPECTEDFAIL"):
                    passed += 1
                elif res == "SKIP":
                    skipped += 1
                else:
                    failed += 1
    except FileNotFoundError:
        pass
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
exit $status
