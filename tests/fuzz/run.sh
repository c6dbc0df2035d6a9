#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.cpp) in ./build-fuzz with clang,
# ASan and UBSan, and runs each for a bounded time on its seed corpus
# (tests/fuzz/corpus/<target>/, read-only) plus a working corpus that grows in
# build-fuzz/fuzz-corpus/<target>/. Fails on any crash, leak, timeout, sanitizer
# report or property failure; the input that did it is kept in
# build-fuzz/fuzz-artifacts/ and the command that replays it is printed.
#
#   tests/fuzz/run.sh [--log FILE] [TARGET...]
#
#   FUZZ_SECONDS  run time per target (default 30)
#   FUZZ_JOBS     targets run at once (default: the number of CPUs)
#   --log FILE    also write one JSON line per target ({"name", "result", ...}),
#                 the format scripts/test.sh counts
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${FUZZ_SECONDS:-30}
jobs=${FUZZ_JOBS:-$(nproc)}
log_file=""
targets=()
while (($#)); do
  case "$1" in
    --log) log_file=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if ((${#targets[@]} == 0)); then
  for f in tests/fuzz/fuzz_*.cpp; do targets+=("$(basename "$f" .cpp)"); done
fi

build=build-fuzz
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
record() {  # name result [extra json members]
  [[ -n "$log_file" ]] && echo "{\"name\": \"fuzz/$1\", \"result\": \"$2\"${3:+, $3}}" >>"$log_file"
  return 0
}
if [[ -n "$log_file" ]]; then mkdir -p "$(dirname "$log_file")"; : >"$log_file"; fi

if ! command -v clang++ >/dev/null; then
  echo "fuzz: clang++ not found (apt-get install clang libclang-rt-dev, or scripts/bootstrap.sh --test-deps)" >&2
  record build FAIL
  exit 1
fi
if [[ ! -f $build/build.ninja ]]; then
  CC=clang CXX=clang++ meson setup $build -Dfuzz=enabled -Dtests=disabled \
    -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
fi
echo "fuzz: building ${#targets[@]} targets in $build ..." >&2
if ! ninja -C $build "${targets[@]/#/tests/fuzz/}" >"$results/build.log" 2>&1; then
  grep -E "error|FAILED" "$results/build.log" | head -20 >&2 || tail -20 "$results/build.log" >&2
  record build FAIL
  exit 1
fi

export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
mkdir -p $build/fuzz-artifacts

dict_for() {
  case "$1" in
    fuzz_json_body|fuzz_worker_protocol) echo tests/fuzz/dict/json.dict ;;
    fuzz_config) echo tests/fuzz/dict/toml.dict ;;
    fuzz_range) echo tests/fuzz/dict/range.dict ;;
    fuzz_path_segment|fuzz_query) echo tests/fuzz/dict/path_segment.dict ;;
  esac
}

run_one() {
  local t=$1 exe=$build/tests/fuzz/$1 work=$build/fuzz-corpus/$1 dict
  mkdir -p "$work" "tests/fuzz/corpus/$t"
  dict=$(dict_for "$t")
  local args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=16384
              -print_final_stats=1 -artifact_prefix="$build/fuzz-artifacts/$t-")
  [[ -n "$dict" ]] && args+=(-dict="$dict")
  if "$exe" "${args[@]}" "$work" "tests/fuzz/corpus/$t" >"$results/$t.log" 2>&1; then
    echo OK >"$results/$t.rc"
  else
    echo FAIL >"$results/$t.rc"
  fi
}

running=0
for t in "${targets[@]}"; do
  if [[ ! -x $build/tests/fuzz/$t ]]; then
    echo "fuzz: no target $t" >&2
    echo FAIL >"$results/$t.rc"
    continue
  fi
  run_one "$t" &
  running=$((running + 1))
  if ((running >= jobs)); then
    wait -n || true
    running=$((running - 1))
  fi
done
wait || true

status=0
printf '%-22s %6s %12s %9s %7s %6s\n' target result executions "exec/s" corpus cov >&2
for t in "${targets[@]}"; do
  res=$(cat "$results/$t.rc" 2>/dev/null || echo FAIL)
  stat() { sed -n "s/^stat::$1: *//p" "$results/$t.log" 2>/dev/null | tail -1; }
  execs=$(stat number_of_executed_units); eps=$(stat average_exec_per_sec)
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$results/$t.log" 2>/dev/null | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$done_line")
  printf '%-22s %6s %12s %9s %7s %6s\n' "$t" "$res" "${execs:-?}" "${eps:-?}" "${corp:-?}" "${cov:-?}" >&2
  record "$t" "$( [[ $res == OK ]] && echo OK || echo FAIL )" \
    "\"executions\": ${execs:-0}, \"exec_per_s\": ${eps:-0}, \"seconds\": $seconds"
  if [[ $res != OK ]]; then
    status=1
    echo "---- $t failed; last lines of its log:" >&2
    grep -vE '^#[0-9]+[[:space:]]' "$results/$t.log" | tail -40 >&2 || true
    art=$(ls -t $build/fuzz-artifacts/"$t"-* 2>/dev/null | head -1 || true)
    [[ -n "$art" ]] && echo "---- replay: ASAN_OPTIONS=$ASAN_OPTIONS UBSAN_OPTIONS=$UBSAN_OPTIONS $build/tests/fuzz/$t $art" >&2
  fi
done
exit $status
